"""qa2, qa3, qa5 generators, label sets, story order in the input, bAbI files, BABILong, `rmt preview`."""

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from rmt_cli.engine import content_length
from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.experiment import task_spec
from rmt_cli.facts import GENERATORS, LABELS, LOCATIONS, Story, babi_split_files, read_babi
from rmt_cli.samples import SampleFactory, TaskSpec

FIXTURES = Path(__file__).parent / "fixtures" / "babi"
TRAIN_FILE, TEST_FILE = FIXTURES / "qa2_sample_train.txt", FIXTURES / "qa2_sample_test.txt"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200"}
ENV.pop("HYDRA_FULL_ERROR", None)
SEEDS = range(400)


def rmt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rmt_cli", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=300)


# ---------------------------------------------------------------------------------------------
# An independent checker: parse the facts as text, replay them on a world, answer the question.

FACT_PATTERNS = {
    "move": re.compile(r"^(\w+) (?:moved|went|went back|journeyed|travelled) to the (\w+)\.$"),
    "get": re.compile(r"^(\w+) (?:picked up|got|grabbed|took) the (\w+) there\.$"),
    "drop": re.compile(r"^(\w+) (?:dropped|discarded|put down|left) the (\w+) there\.$"),
    "give": re.compile(r"^(\w+) (?:gave|handed|passed) the (\w+) to (\w+)\.$"),
}


def replay(facts):
    """Replay the facts, checking each action is possible; returns object places, object trails and gifts."""
    at, held, lying, trail, gifts = {}, {}, {}, defaultdict(list), []
    for fact in facts:
        matches = [(kind, m.groups()) for kind, p in FACT_PATTERNS.items() if (m := p.match(fact))]
        assert len(matches) == 1, fact
        kind, args = matches[0]
        if kind == "move":
            person, place = args
            assert at.get(person) != place and place in LOCATIONS, fact
            at[person] = place
            for obj in [o for o, p in held.items() if p == person]:
                trail[obj].append(place)
        elif kind == "get":
            person, obj = args
            assert person in at and obj not in held and lying.get(obj, at[person]) == at[person], fact
            held[obj] = person
            lying.pop(obj, None)
            if not trail[obj] or trail[obj][-1] != at[person]:
                trail[obj].append(at[person])
        elif kind == "drop":
            person, obj = args
            assert held.get(obj) == person, fact
            del held[obj]
            lying[obj] = at[person]
        else:
            giver, obj, receiver = args
            assert held.get(obj) == giver and receiver != giver and at.get(receiver) == at[giver], fact
            held[obj] = receiver
            gifts.append((giver, obj, receiver))
    places = {**lying, **{o: at[p] for o, p in held.items()}}
    return places, trail, gifts


def only(answers):
    assert len(answers) == 1, answers
    return next(iter(answers))


def solve(story: Story) -> str:
    places, trail, gifts = replay(story.facts)
    q = story.question
    if m := re.fullmatch(r"Where is the (\w+)\?", q):
        return places[m[1]]
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", q):
        visited = trail[m[1]]
        assert visited.count(m[2]) == 1 and visited.index(m[2]) > 0, (visited, q)
        return visited[visited.index(m[2]) - 1]
    if m := re.fullmatch(r"Who gave the (\w+) to (\w+)\?", q):
        return only({g for g, o, r in gifts if (o, r) == (m[1], m[2])})
    if m := re.fullmatch(r"Who gave the (\w+)\?", q):
        return only({g for g, o, r in gifts if o == m[1]})
    if m := re.fullmatch(r"Who received the (\w+)\?", q):
        return only({r for g, o, r in gifts if o == m[1]})
    if m := re.fullmatch(r"What did (\w+) give to (\w+)\?", q):
        return only({o for g, o, r in gifts if (g, r) == (m[1], m[2])})
    if m := re.fullmatch(r"Who did (\w+) give the (\w+) to\?", q):
        return only({r for g, o, r in gifts if (g, o) == (m[1], m[2])})
    raise AssertionError(f"unknown question {q!r}")


@pytest.mark.parametrize("generator", ["qa2", "qa3", "qa5"])
def test_answers_are_right_when_the_facts_are_replayed(generator):
    questions, answers, people = set(), set(), []
    for seed in SEEDS:
        story = GENERATORS[generator](np.random.default_rng(seed))
        assert 4 <= len(story.facts) <= 6
        assert solve(story) == story.answer and story.answer in LABELS[generator]
        questions.add(" ".join(story.question.split()[:2]))
        answers.add(story.answer)
        people.append(len({fact.split()[0] for fact in story.facts}))
    assert answers == set(LABELS[generator])  # every label occurs
    assert np.mean(np.array(people) > 1) > 0.5  # most stories have other people's facts as distractors
    if generator == "qa5":
        assert questions == {"Who gave", "Who received", "What did", "Who did"}


def test_a_hand_made_qa3_story_is_solved_by_the_checker():
    story = Story(("John went to the office.", "John took the apple there.", "Mary moved to the kitchen.",
                   "John went to the garden.", "John moved to the kitchen."),
                  "Where was the apple before the kitchen?", "garden")
    assert solve(story) == "garden"
    with pytest.raises(AssertionError):  # the checker refuses impossible actions: Mary holds nothing
        replay(("Mary went to the office.", "Mary dropped the milk there."))


def test_longest_story_and_question_fit_the_smallest_segment(tokenizer):
    smoke_content = content_length(64, 10)  # experiment=smoke: 64 positions, 10 memory vectors
    longest = 0
    for generator in GENERATORS:
        for seed in SEEDS:
            story = GENERATORS[generator](np.random.default_rng(seed))
            n = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (*story.facts, story.question))
            longest = max(longest, n)
    assert longest <= smoke_content and longest < 80


def test_label_sets():
    assert TaskSpec("qa5", "qa5", "random").labels == ("Mary", "Jeff", "Fred", "Bill", "football", "apple", "milk")
    for generator in ("qa1", "qa2", "qa3", "qa4"):
        assert TaskSpec(generator, generator, "random").labels == LOCATIONS


# ---------------------------------------------------------------------------------------------
# Facts in the input: random sentence starts, story order.

@pytest.mark.parametrize("generator", ["qa2", "qa3", "qa5"])
def test_facts_sit_at_sentence_starts_in_story_order(generator, synthetic_noise, tokenizer):
    task = TaskSpec(generator, generator, "random")
    f = SampleFactory(task, synthetic_noise.eval, tokenizer, 115)
    starts = set(synthetic_noise.eval.sentence_starts.tolist())
    n_segments, spread = 4, 0
    for i, sample in enumerate(f.sample_set("test", 0, n_segments, 40)):
        story = GENERATORS[generator](np.random.default_rng((0, 2, n_segments, i)))  # the draw's first use of rng
        assert task.labels[sample.label] == story.answer
        assert [fact.tokens.tolist() for fact in sample.facts] == [f.encode(t).tolist() for t in story.facts]
        places = [(fact.segment, fact.offset) for fact in sample.facts]
        assert places == sorted(places)
        spread += len({fact.segment for fact in sample.facts}) > 1
        segments = [f.segment(sample, k) for k in range(n_segments)]
        for k, fact in enumerate(sample.facts):
            assert sample.noise_starts[fact.segment] + fact.offset in starts
            where = fact.offset + sum(len(g.tokens) for g in sample.facts[:k] if g.segment == fact.segment)
            assert np.array_equal(segments[fact.segment][where:where + len(fact.tokens)], fact.tokens)
        assert np.array_equal(segments[-1][-len(sample.question):], sample.question)
    assert spread > 20


def test_a_story_longer_than_a_segment_is_one_clear_error(synthetic_noise, tokenizer):
    f = SampleFactory(TaskSpec("qa2", "qa2", "random"), synthetic_noise.eval, tokenizer, 20)
    with pytest.raises(UsageError, match="raise segment.length"):
        f.sample_set("test", 0, 2, 10)


# ---------------------------------------------------------------------------------------------
# bAbI text files.

def test_the_fixture_file_parses_to_its_stories():
    stories = read_babi(str(TRAIN_FILE))
    assert stories[0] == Story(("Mary went to the kitchen.", "Mary picked up the apple there."),
                               "Where is the apple?", "kitchen")
    # the story goes on after a question: the second question sees statements 1, 2, 4 and 5
    assert stories[1] == Story(("Mary went to the kitchen.", "Mary picked up the apple there.",
                                "Mary travelled to the garden.", "John moved to the office."),
                               "Where is the apple?", "garden")
    assert [len(s.facts) for s in stories] == [2, 4, 5, 3] and stories[3].answer == "office"
    assert all(solve(s) == s.answer for s in stories)  # the hand-written stories are consistent


def write_babi(path: Path, stories) -> None:
    lines = []
    for story in stories:
        lines += [f"{i} {fact}" for i, fact in enumerate(story.facts, 1)]
        lines.append(f"{len(story.facts) + 1} {story.question} \t{story.answer}\t1")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("generator", ["qa2", "qa3", "qa5"])
def test_generated_stories_round_trip_through_the_babi_format(generator, tmp_path):
    stories = [GENERATORS[generator](np.random.default_rng(seed)) for seed in range(50)]
    path = tmp_path / f"{generator}_round_train.txt"
    write_babi(path, stories)
    assert list(read_babi(str(path))) == stories


def test_train_reads_the_train_file_and_evaluation_the_test_file(synthetic_noise, tokenizer, tmp_path):
    assert babi_split_files(str(TRAIN_FILE)) == (str(TRAIN_FILE), str(TEST_FILE))
    assert babi_split_files(str(TEST_FILE)) == (str(TRAIN_FILE), str(TEST_FILE))
    alone = tmp_path / "qa2_alone_train.txt"
    alone.write_text(TRAIN_FILE.read_text())
    assert babi_split_files(str(alone)) == (str(alone), str(alone))

    task = TaskSpec("qa2-file", "qa2", "random", facts_file=str(TRAIN_FILE))
    assert task.labels == ("bedroom", "garden", "hallway", "kitchen", "office")  # answers of both files, sorted
    f = SampleFactory(task, synthetic_noise.eval, tokenizer, 115)
    test = f.sample_set("test", 0, 3, 20)
    assert {task.labels[s.label] for s in test} == {"bedroom"}  # the test file's only question
    train = [f.training_sample(0, i, (1, 3)) for i in range(40)]
    assert {task.labels[s.label] for s in train} == {"kitchen", "garden", "hallway", "office"}
    for sample in train:  # the story's statements, in order
        story = next(s for s in read_babi(str(TRAIN_FILE)) if [f.encode(t).tolist() for t in s.facts]
                     == [fact.tokens.tolist() for fact in sample.facts])
        assert task.labels[sample.label] == story.answer


def test_task_facts_file_flows_from_the_config():
    from hydra import compose, initialize_config_dir

    from rmt_cli.cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        for name in ("memorize", "detect", "reasoning", "qa2", "qa3", "qa5", "babilong"):
            assert compose("train", overrides=[f"task={name}"]).task.facts_file is None
        cfg = compose("train", overrides=["task=qa3", f"task.facts_file={TRAIN_FILE}"])
    spec = task_spec(cfg)
    assert spec.facts_file == str(TRAIN_FILE) and spec.generator == "qa3" and spec.fact_position == "random"


@pytest.mark.parametrize("lines, line, message", [
    (["1 Mary went to the kitchen.", "Mary moved to the office.", "2 Where is Mary?\toffice\t1"], 2,
     "expected 'ID text'"),
    (["1 Mary went to the kitchen.", "3 Where is Mary?\tkitchen\t1"], 2, "ID 3 after ID 1"),
    (["1 Mary went to the kitchen.", "2 Where is Mary?\t\t1"], 2, "expected a question line"),
    (["1 Mary went to the kitchen.", "2 John went to the office.", "3 Where is Mary?\tkitchen\tone"], 3,
     "expected a question line"),
])
def test_a_malformed_file_is_one_line_naming_file_and_line(lines, line, message, tmp_path):
    path = tmp_path / "qa1_bad_train.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RuntimeFailure) as error:
        read_babi(str(path))
    text = str(error.value)
    assert text.startswith(f"{path} line {line}: {message}") and "\n" not in text


def test_missing_or_question_free_files_are_clear_errors(tmp_path):
    with pytest.raises(RuntimeFailure, match="does not exist"):
        read_babi(str(tmp_path / "qa1_missing_train.txt"))
    empty = tmp_path / "qa1_statements_train.txt"
    empty.write_text("1 Mary went to the kitchen.\n")
    with pytest.raises(RuntimeFailure, match="no question lines"):
        read_babi(str(empty))


# ---------------------------------------------------------------------------------------------
# Task configs, BABILong.

def task_cfg(**task):
    base = {"name": "t", "generator": "qa1", "fact_position": "random", "facts_file": None}
    return OmegaConf.create({"task": {**base, **task}})


def test_task_spec_refuses_unknown_generators_and_long_babilong_configs():
    with pytest.raises(UsageError, match="task.generator=qa9"):
        task_spec(task_cfg(generator="qa9"))
    with pytest.raises(UsageError, match="task.length=1k"):
        task_spec(task_cfg(source="babilong", split="qa1", length="1k", generator=None))
    spec = task_spec(task_cfg(source="babilong", split="qa2", length="0k", generator=None))
    assert spec.babilong == ("0k", "qa2") and spec.ordered


def test_babilong_offline_is_one_clear_line():
    result = rmt("preview", "task=babilong", "noise=synthetic", "backbone=tiny")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot load BABILong (RMT-team/babilong 0k/qa1)"), result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# Commands.

def test_preview_prints_a_sample_with_its_answer(tmp_path):
    result = rmt("preview", "task=qa3", "noise=synthetic", "backbone=tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    story = GENERATORS["qa3"](np.random.default_rng((0, 2, 1, 0)))  # test sample 0 of seed 0, one segment
    assert f"answer: {story.answer}" in result.stdout
    assert story.question.lower() in result.stdout and "segment 1/1" in result.stdout
    assert not any(tmp_path.iterdir())  # writes nothing


def test_preview_takes_segments_and_seed(tmp_path):
    result = rmt("preview", "task=qa5", "noise=synthetic", "backbone=tiny", "--segments", "3", "--seed", "7",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    story = GENERATORS["qa5"](np.random.default_rng((7, 2, 3, 0)))
    assert f"answer: {story.answer}" in result.stdout and "segment 3/3" in result.stdout


def test_smoke_training_on_qa2(tmp_path):
    result = rmt("train", "experiment=smoke", "task=qa2", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    assert "Curriculum finished" in result.stdout
    assert (tmp_path / "run" / "checkpoints" / "stage2-best" / "model.safetensors").is_file()
