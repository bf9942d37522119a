"""The bAbI world generators (qa1-world, qa2, qa3, qa5): every answer checked by replaying the facts as text, and
the distribution of stories checked against the numbers documented in docs/tasks.md."""

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from rmt_cli.facts import LOCATIONS, Story
from rmt_cli.stories import GENERATORS, LABELS

DOC = Path(__file__).parents[1] / "docs" / "tasks.md"
STORIES = 1000  # per generator, seeds 0..STORIES-1

FACT_PATTERNS = {
    "move": re.compile(r"^(\w+) (?:moved|went|went back|journeyed|travelled) to the (\w+)\.$"),
    "get": re.compile(r"^(\w+) (?:picked up|got|grabbed|took) the (\w+)( there)?\.$"),
    "drop": re.compile(r"^(\w+) (?:dropped|discarded|put down|left) the (\w+)( there)?\.$"),
    "give": re.compile(r"^(\w+) (?:gave|handed|passed) the (\w+) to (\w+)\.$"),
}
QA5_FORMS = {  # question pattern -> the part of the latest matching transfer (giver, object, receiver) it asks
    r"Who gave the (?P<o>\w+) to (?P<r>\w+)\?": "g",
    r"Who gave the (?P<o>\w+)\?": "g",
    r"Who received the (?P<o>\w+)\?": "r",
    r"What did (?P<g>\w+) give to (?P<r>\w+)\?": "o",
    r"Who did (?P<g>\w+) give the (?P<o>\w+) to\?": "r",
}


def replay(facts):
    """Replay the facts as text, checking each action is possible; returns what the story tells of the world."""
    at, held, lying, trail, gifts, moves = {}, {}, {}, defaultdict(list), [], Counter()
    told = {"there": 0, "takes and drops": 0, "unseen take": False}
    for fact in facts:
        matches = [(kind, m.groups()) for kind, p in FACT_PATTERNS.items() if (m := p.match(fact))]
        assert len(matches) == 1, fact
        kind, args = matches[0]
        if kind == "move":
            person, place = args
            assert at.get(person) != place and place in LOCATIONS, fact
            at[person] = place
            moves[person] += 1
            for obj in [o for o, p in held.items() if p == person]:
                if trail[obj][-1:] != [place]:
                    trail[obj].append(place)
        elif kind == "get":
            person, obj, there = args
            assert obj not in held and (person in at or not there), fact
            if person in at:  # it lay here, or its place was never told
                assert lying.get(obj, at[person]) == at[person] and (obj in lying or not trail[obj]), fact
                if trail[obj][-1:] != [at[person]]:
                    trail[obj].append(at[person])
            else:  # taken before the story says where the taker is: only an object never placed
                assert obj not in lying and not trail[obj], fact
                told["unseen take"] = True
            held[obj] = person
            lying.pop(obj, None)
        elif kind == "drop":
            person, obj, there = args
            assert held.get(obj) == person and person in at, fact
            del held[obj]
            lying[obj] = at[person]
        else:
            giver, obj, receiver = args
            assert held.get(obj) == giver and receiver != giver and giver in at and at.get(receiver) == at[giver], fact
            held[obj] = receiver
            gifts.append(dict(g=giver, o=obj, r=receiver))
        if kind in ("get", "drop"):
            told["takes and drops"] += 1
            told["there"] += bool(args[2])
    places = {**lying, **{o: at[p] for o, p in held.items() if p in at}}
    return dict(at=at, places=places, trail=trail, gifts=gifts, moves=moves, **told)


def solve(story: Story):
    """The answer read off the replayed world, and the question's kind."""
    world = replay(story.facts)
    q = story.question
    if m := re.fullmatch(r"Where is (\w+)\?", q):
        return world["at"][m[1]], {"the person asked about moved more than once": world["moves"][m[1]] > 1}
    if m := re.fullmatch(r"Where is the (\w+)\?", q):
        return world["places"][m[1]], {}
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", q):
        trail = world["trail"][m[1]]
        assert len(trail) > 1 and trail[-1] == m[2] == world["places"][m[1]], (trail, q)
        return trail[-2], {"about a place visited before": m[2] in trail[:-1]}
    for pattern, asked in QA5_FORMS.items():
        if m := re.fullmatch(pattern, q):
            matching = [gift for gift in world["gifts"] if all(gift[k] == v for k, v in m.groupdict().items())]
            assert matching, q
            form = {"g": "giver", "r": "receiver", "o": "object"}[asked]
            return matching[-1][asked], {"several transfers match": len(matching) > 1,
                                         f"asks the {form}": True}
    raise AssertionError(f"unknown question {q!r}")


def measure(generator: str, stories: int = STORIES) -> dict:
    """The statistics docs/tasks.md documents, measured on seeds 0..stories-1 (answers checked on the way)."""
    facts, kinds, there, taken, unseen = [], Counter(), 0, 0, 0
    for seed in range(stories):
        story = GENERATORS[generator](np.random.default_rng(seed))
        answer, kind = solve(story)
        assert answer == story.answer and answer in LABELS[generator], story
        world = replay(story.facts)
        facts.append(len(story.facts))
        kinds.update(k for k, v in kind.items() if v)
        there, taken, unseen = there + world["there"], taken + world["takes and drops"], unseen + world["unseen take"]
    facts = np.array(facts)
    stats = {"facts, median": np.median(facts), "facts, 90th percentile": np.percentile(facts, 90),
             "facts, fewest": facts.min()}
    stats.update({k: v / stories for k, v in kinds.items()})
    if taken:
        stats["takes and drops ending in 'there'"] = there / taken
        stats["a take before the taker's place is told"] = unseen / stories
    return stats


def documented() -> dict[str, dict[str, str]]:
    """task -> statistic -> value, from the table in docs/tasks.md."""
    table = defaultdict(dict)
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"qa\d(-world)?", cells[0]):
            table[cells[0]][cells[1]] = cells[2]
    return table


@pytest.mark.parametrize("generator", ["qa1-world", "qa2", "qa3", "qa5"])
def test_statistics_match_the_documented_numbers(generator):
    doc = documented()[generator]
    measured = measure(generator)
    assert set(doc) <= set(measured), set(doc) - set(measured)
    assert len(doc) >= 3
    for name, text in doc.items():
        if text.endswith("%"):  # a share: within 5 points
            assert abs(measured[name] - float(text[:-1]) / 100) <= 0.05, (name, measured[name], text)
        else:  # a count of facts: within 10% (and 1 fact)
            assert abs(measured[name] - float(text)) <= max(1, 0.1 * float(text)), (name, measured[name], text)


def test_qa1_world_stories_have_2_to_10_facts_and_a_question_about_a_mover():
    counts = Counter(len(GENERATORS["qa1-world"](np.random.default_rng(seed)).facts) for seed in range(500))
    assert set(counts) == {2, 4, 6, 8, 10} and min(counts.values()) > 70


def test_the_checker_refuses_impossible_actions_and_reads_a_hand_made_qa3_story():
    story = Story(("John went to the office.", "John took the apple there.", "Mary moved to the kitchen.",
                   "John went to the garden.", "John moved to the office.", "John went to the kitchen.",
                   "John travelled to the office."), "Where was the apple before the office?", "kitchen")
    assert solve(story) == ("kitchen", {"about a place visited before": True})
    with pytest.raises(AssertionError):  # Mary holds nothing
        replay(("Mary went to the office.", "Mary dropped the milk."))
    with pytest.raises(AssertionError):  # the apple lies in the office, John is in the garden
        replay(("John went to the office.", "John took the apple.", "John dropped the apple.",
                "John went to the garden.", "John got the apple."))


def test_qa5_answers_the_latest_matching_transfer():
    story = Story(("Fred went to the office.", "Jeff went to the office.", "Fred took the milk.",
                   "Fred gave the milk to Jeff.", "Jeff passed the milk to Fred.", "Fred handed the milk to Jeff."),
                  "Who gave the milk?", "Fred")
    assert solve(story) == ("Fred", {"several transfers match": True, "asks the giver": True})


@pytest.mark.parametrize("generator", ["qa1-world", "qa2", "qa3", "qa5"])
def test_every_label_occurs_and_sentences_stay_short(generator, tokenizer):
    answers, sentences = set(), set()
    for seed in range(300):
        story = GENERATORS[generator](np.random.default_rng(seed))
        answers.add(story.answer)
        sentences.update((*story.facts, story.question))
    assert answers == set(LABELS[generator])
    lengths = [len(ids) for ids in tokenizer(sorted(sentences), add_special_tokens=False)["input_ids"]]
    assert max(lengths) <= 10  # every fact and question: a short sentence, as in bAbI


if __name__ == "__main__":  # print the statistics to document
    for name in ("qa1-world", "qa2", "qa3", "qa5"):
        for key, value in measure(name, 3000).items():
            print(f"| {name} | {key} | {value:g} |" if key.startswith("facts") else f"| {name} | {key} | {value:.1%} |")
