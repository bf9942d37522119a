"""bAbI-style stories: the facts to hide in noise, the question asked at the end, and its answer.

The tasks of the RMT paper use bAbI qa1 (single supporting fact) and qa4 (two-argument relations); qa2 (two
supporting facts), qa3 (three supporting facts) and qa5 (three-argument relations) follow bAbI's vocabulary and
simulate a small world, so every answer is right by construction. qa1-qa4 answer with one of six locations; qa5
with a person or an object (LABELS). Stories can also come from bAbI text files or from BABILong (StoryPool).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from rmt_cli.errors import RuntimeFailure

LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
PEOPLE = ("Mary", "John", "Daniel", "Sandra")
MOVES = ("moved", "went", "went back", "journeyed", "travelled")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


@dataclass(frozen=True)
class Story:
    facts: tuple[str, ...]
    question: str
    answer: str


def single_supporting_fact(rng: np.random.Generator) -> Story:
    """qa1: "Daniel went back to the hallway." ... "Where is Daniel?" -> hallway."""
    person = PEOPLE[rng.integers(len(PEOPLE))]
    move = MOVES[rng.integers(len(MOVES))]
    place = LOCATIONS[rng.integers(len(LOCATIONS))]
    return Story(facts=(f"{person} {move} to the {place}.",), question=f"Where is {person}?", answer=place)


# qa4's story shapes over three places in a line on one axis, P0 -d- P1 -d- P2 (P0 is d of P1, P1 is d of P2), with
# bAbI's proportions: both facts relate a shared place (P0 is d of P1, P2 is opposite-d of P1), chain (P0 is d of
# P1, P1 is d of P2), or share their subject (P1 is opposite-d of P0, P1 is d of P2).
QA4_SHAPES = {"shared place": 0.44, "chain": 0.45, "shared subject": 0.11}
AXES = (("north", "south"), ("east", "west"))


def two_argument_relations(rng: np.random.Generator) -> Story:
    """qa4 as bAbI writes it: two relations between three places on one axis, one question about one of them.

    "The bedroom is west of the kitchen." "The hallway is west of the bedroom." "What is west of the kitchen?"
    -> bedroom. The question reads one relation in one of four ways: forward ("What is west of the kitchen?",
    "What is the bedroom west of?") or inverted ("What is east of the bedroom?" -> kitchen, "What is the kitchen
    east of?" -> bedroom); only direct relations count (the hallway is west of the kitchen too, but no fact says so),
    so every question has exactly one answer. The facts come in random order (qa4 is order-free).
    """
    p0, p1, p2 = (LOCATIONS[i] for i in rng.choice(len(LOCATIONS), size=3, replace=False))
    d = AXES[rng.integers(2)][rng.integers(2)]
    back = OPPOSITE[d]
    shapes = list(QA4_SHAPES)
    shape = shapes[rng.choice(len(shapes), p=list(QA4_SHAPES.values()))]
    if shape == "shared place":
        relations = [(p0, d, p1), (p2, back, p1)]
    elif shape == "chain":
        relations = [(p0, d, p1), (p1, d, p2)] if rng.integers(2) else [(p2, back, p1), (p1, back, p0)]
    else:
        relations = [(p1, back, p0), (p1, d, p2)]
    x, r, y = relations[rng.integers(2)]  # the relation asked about: x is r of y
    if rng.integers(2):  # inverted: y is OPPOSITE[r] of x
        x, r, y = y, OPPOSITE[r], x
    question, answer = (f"What is {r} of the {y}?", x) if rng.integers(2) else (f"What is the {x} {r} of?", y)
    order = rng.permutation(2)
    return Story(facts=tuple(f"The {a} is {b} of the {c}." for a, b, c in (relations[i] for i in order)),
                 question=question, answer=answer)


# ---------------------------------------------------------------------------------------------
# qa2, qa3, qa5: a small simulated world (people move, objects are picked up, put down and given), so every
# answer is read off the world state that the facts produce.

OBJECTS = ("football", "apple", "milk")
GETS = ("picked up", "got", "grabbed", "took")
DROPS = ("dropped", "discarded", "put down", "left")
GIVES = ("gave", "handed", "passed")
GIVERS = ("Mary", "Jeff", "Fred", "Bill")  # qa5's cast
# Facts per story. Every fact is at most 7 MiniLM tokens and every question at most 8, so the longest story and
# its question take 50 tokens: they fit one segment of experiment=smoke (64 positions - 10 memory - 3 special).
MIN_FACTS, MAX_FACTS = 4, 6


class World:
    """Where people are, who holds what, where objects lie; facts are actions that are possible in that state."""

    def __init__(self, people: tuple[str, ...], rng: np.random.Generator):
        self.people, self.rng = people, rng
        self.place: dict[str, str] = {}  # person -> location, once a fact has said it
        self.holder: dict[str, str] = {}  # object -> person carrying it
        self.lying: dict[str, str] = {}  # object -> location where it was put down
        self.trail: dict[str, list[str]] = {o: [] for o in OBJECTS}  # successive locations of each object
        self.gifts: list[tuple[str, str, str]] = []  # (giver, object, receiver), in story order
        self.facts: list[str] = []

    def pick(self, options):
        return options[self.rng.integers(len(options))]

    def where(self, obj: str) -> str | None:
        return self.place[self.holder[obj]] if obj in self.holder else self.lying.get(obj)

    def carried(self, person: str) -> list[str]:
        return [o for o in OBJECTS if self.holder.get(o) == person]

    def can_get(self) -> list[tuple[str, str]]:
        """(person, object): a located person takes a free object that lies where they are or is not placed yet."""
        return [(p, o) for p in self.people if p in self.place for o in OBJECTS
                if o not in self.holder and self.lying.get(o, self.place[p]) == self.place[p]]

    def can_give(self) -> list[tuple[str, str, str]]:
        return [(g, o, r) for o, g in self.holder.items() for r in self.people
                if r != g and self.place.get(r) == self.place[g]]

    def move(self, toward_people: bool = False) -> None:
        person = self.pick(self.people)
        occupied = sorted({self.place[p] for p in self.place if p != person} - {self.place.get(person)})
        if toward_people and occupied and self.rng.integers(2):
            place = self.pick(occupied)
        else:
            place = self.pick([p for p in LOCATIONS if p != self.place.get(person)])
        self.place[person] = place
        for obj in self.carried(person):
            self.trail[obj].append(place)
        self.facts.append(f"{person} {self.pick(MOVES)} to the {place}.")

    def get(self) -> None:
        person, obj = self.pick(self.can_get())
        self.holder[obj] = person
        self.lying.pop(obj, None)
        if self.trail[obj][-1:] != [self.place[person]]:
            self.trail[obj].append(self.place[person])
        self.facts.append(f"{person} {self.pick(GETS)} the {obj} there.")

    def drop(self) -> None:
        obj = self.pick(sorted(self.holder))
        person = self.holder.pop(obj)
        self.lying[obj] = self.place[person]
        self.facts.append(f"{person} {self.pick(DROPS)} the {obj} there.")

    def give(self) -> None:
        giver, obj, receiver = self.pick(self.can_give())
        self.holder[obj] = receiver
        self.gifts.append((giver, obj, receiver))
        self.facts.append(f"{giver} {self.pick(GIVES)} the {obj} to {receiver}.")

    def act(self, weights: dict[str, float]) -> None:
        """One random possible action; `weights` (move, get, drop, give) set how often each kind is chosen."""
        possible = {"move": True, "get": bool(self.can_get()), "drop": bool(self.holder),
                    "give": bool(self.can_give())}
        kinds = [k for k, w in weights.items() if w > 0 and possible[k]]
        p = np.array([weights[k] for k in kinds])
        kind = kinds[self.rng.choice(len(kinds), p=p / p.sum())]
        if kind == "move":
            self.move(toward_people=weights.get("give", 0) > 0)
        else:
            getattr(self, kind)()


def simulate(rng: np.random.Generator, people: tuple[str, ...], weights: dict[str, float], questions) -> Story:
    """Run random worlds of MIN_FACTS..MAX_FACTS facts until `questions(world)` offers one; pick one at random."""
    while True:
        world = World(people, rng)
        for _ in range(int(rng.integers(MIN_FACTS, MAX_FACTS + 1))):
            world.act(weights)
        candidates = questions(world)
        if candidates:
            question, answer = candidates[rng.integers(len(candidates))]
            return Story(facts=tuple(world.facts), question=question, answer=answer)


def two_supporting_facts(rng: np.random.Generator) -> Story:
    """qa2: "Mary got the milk there." "Mary travelled to the hallway." "Where is the milk?" -> hallway.

    An object is where its carrier last went, or where it was put down; objects nobody has touched yet have
    no known place and are never asked about.
    """
    def questions(world: World):
        return [(f"Where is the {o}?", world.where(o)) for o in OBJECTS if world.where(o) is not None]

    return simulate(rng, PEOPLE, {"move": 0.5, "get": 0.3, "drop": 0.2}, questions)


def three_supporting_facts(rng: np.random.Generator) -> Story:
    """qa3: "John took the apple there." (in the office) "John went to the garden." "John moved to the kitchen."
    "Where was the apple before the kitchen?" -> garden.

    Asked only about a place the object visited once, and not first, so "before" has exactly one answer.
    """
    def questions(world: World):
        return [(f"Where was the {o} before the {place}?", trail[i - 1])
                for o, trail in world.trail.items() for i, place in enumerate(trail)
                if i > 0 and trail.count(place) == 1]

    return simulate(rng, PEOPLE, {"move": 0.55, "get": 0.3, "drop": 0.15}, questions)


def three_argument_relations(rng: np.random.Generator) -> Story:
    """qa5: "Fred gave the football to Jeff." "Who received the football?" -> Jeff.

    People give what they carry to someone in the same place. Questions: "Who gave the milk to Jeff?",
    "Who gave the milk?", "Who received the football?", "What did Fred give to Jeff?", "Who did Fred give the
    apple to?"; one is only asked when every gift it matches agrees on the answer.
    """
    def questions(world: World):
        gifts = world.gifts
        asked = {}
        for g, o, r in gifts:
            asked.setdefault(f"Who gave the {o} to {r}?", set()).update(x for x, y, z in gifts if (y, z) == (o, r))
            asked.setdefault(f"Who gave the {o}?", set()).update(x for x, y, z in gifts if y == o)
            asked.setdefault(f"Who received the {o}?", set()).update(z for x, y, z in gifts if y == o)
            asked.setdefault(f"What did {g} give to {r}?", set()).update(y for x, y, z in gifts if (x, z) == (g, r))
            asked.setdefault(f"Who did {g} give the {o} to?", set()).update(z for x, y, z in gifts if (x, y) == (g, o))
        return [(q, next(iter(a))) for q, a in asked.items() if len(a) == 1]

    return simulate(rng, GIVERS, {"move": 0.4, "get": 0.25, "drop": 0.05, "give": 0.3}, questions)


GENERATORS = {
    "qa1": single_supporting_fact,
    "qa2": two_supporting_facts,
    "qa3": three_supporting_facts,
    "qa4": two_argument_relations,
    "qa5": three_argument_relations,
}
# The answer vocabulary of each generator: the labels of its classification head.
LABELS = {
    "qa1": LOCATIONS,
    "qa2": LOCATIONS,
    "qa3": LOCATIONS,
    "qa4": LOCATIONS,
    "qa5": GIVERS + OBJECTS,
}
# Generators whose facts may appear in any order (qa4's two relations); other stories keep their order in the input.
ORDER_FREE = frozenset({"qa4"})


# ---------------------------------------------------------------------------------------------
# Stories from data: bAbI text files (task.facts_file) and BABILong (task=babilong).


@dataclass(frozen=True)
class StoryPool:
    """A fixed list of stories used like a generator: each draw picks one uniformly."""

    stories: tuple[Story, ...]

    def __call__(self, rng: np.random.Generator) -> Story:
        return self.stories[rng.integers(len(self.stories))]


BABI_LINE = "'ID text' (a number, one space, the text)"
BABI_QUESTION = "'ID question?<TAB>answer<TAB>supporting IDs'"


@cache
def read_babi(path: str) -> tuple[Story, ...]:
    """Stories of a bAbI text file (read once): each question with the statements of its story before it.

    Lines are "ID text"; the ID restarts at 1 with each story and counts every line, questions included.
    A question line is "ID question?<TAB>answer<TAB>supporting IDs". Blank lines are skipped.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise RuntimeFailure(f"task.facts_file {path} does not exist; pass a bAbI file such as "
                             "qa1_single-supporting-fact_train.txt") from None
    except OSError as err:
        raise RuntimeFailure(f"cannot read task.facts_file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise RuntimeFailure(f"{path} is not UTF-8 text (bad byte at offset {err.start})") from None
    stories, statements, last = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        where = f"{path} line {number}"
        head, _, rest = line.partition(" ")
        if not head.isdigit() or not rest.strip():
            raise RuntimeFailure(f"{where}: expected {BABI_LINE}, got {line[:40]!r}")
        ident = int(head)
        if ident == 1:
            statements = []
        elif ident != last + 1:
            raise RuntimeFailure(f"{where}: ID {ident} after ID {last}; IDs count up by one from 1 in each story")
        last = ident
        if "\t" not in rest:
            statements.append(rest.strip())
            continue
        question, answer, *support = (part.strip() for part in rest.split("\t"))
        if not question or not answer or not all(s.isdigit() for s in " ".join(support).split()):
            raise RuntimeFailure(f"{where}: expected a question line {BABI_QUESTION}, got {line[:40]!r}")
        stories.append(Story(facts=tuple(statements), question=question, answer=answer))
    if not stories:
        raise RuntimeFailure(f"{path} holds no question lines ({BABI_QUESTION}); is it a bAbI task file?")
    return tuple(stories)


def babi_split_files(path: str) -> tuple[str, str]:
    """(training file, validation/test file) for task.facts_file=path.

    bAbI ships each task as NAME_train.txt and NAME_test.txt: either one selects both when the other lies beside
    it. Without a partner (or for a file named otherwise), training, validation and test all draw from `path`.
    """
    file = Path(path)
    for own, other in (("_train.txt", "_test.txt"), ("_test.txt", "_train.txt")):
        if file.name.endswith(own):
            partner = file.with_name(file.name[: -len(own)] + other)
            if partner.is_file():
                return (str(file), str(partner)) if own == "_train.txt" else (str(partner), str(file))
    return str(file), str(file)


BABILONG = "RMT-team/babilong"


@cache
def load_babilong(length: str, split: str) -> tuple[Story, ...]:
    """BABILong's stories of one task (split qa1..qa10) and length config, from the Hugging Face hub (cached).

    Each row's input becomes the facts, one per sentence; its question and target are the question and answer.
    """
    try:
        import datasets

        rows = datasets.load_dataset(BABILONG, length, split=split)
        stories = tuple(Story(facts=tuple(s for s in re.split(r"(?<=[.!?])\s+", row["input"].strip()) if s),
                              question=row["question"].strip(), answer=row["target"].strip()) for row in rows)
    except Exception as err:  # offline, unknown config or split, changed schema: all reported the same way
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise RuntimeFailure(f"cannot load BABILong ({BABILONG} {length}/{split}): {detail}; it needs the Hugging "
                             "Face hub once (then it is cached); offline, use a generated task such as task=qa2 or "
                             "a bAbI file with task.facts_file=PATH") from None
    if not stories:
        raise RuntimeFailure(f"BABILong {length}/{split} has no rows")
    return stories
