"""Tasks: label sets, stories spread through the input in order, bAbI files, BABILong, `rmt preview`, qa1 end to
end. (The generators themselves: test_world.py.)"""

import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from helpers import cli
from omegaconf import OmegaConf
from test_world import solve

from rmt_cli.babi import babi_split_files, read_babi
from rmt_cli.engine import content_length
from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.experiment import task_spec
from rmt_cli.facts import LOCATIONS, Story
from rmt_cli.placement import minimum_segments
from rmt_cli.samples import SampleFactory, TrainingMix
from rmt_cli.stories import GENERATORS, LABELS
from rmt_cli.task_spec import TaskSpec

FIXTURES = Path(__file__).parent / "fixtures" / "babi"
TRAIN_FILE, TEST_FILE = FIXTURES / "qa2_sample_train.txt", FIXTURES / "qa2_sample_test.txt"
rmt = partial(cli.rmt, env={"COLUMNS": "200"})  # rich lays `rmt preview` out for a 200-column terminal


def drawn_story(factory: SampleFactory, seed, n_segments: int) -> Story:
    """The story a sample drawn from seed holds: the generator's first story that fits the input."""
    rng = np.random.default_rng(seed)
    story = factory.task.stories("test")(rng)
    while factory.segments_needed(story) > n_segments:
        story = factory.task.stories("test")(rng)
    return story


def test_label_sets():
    assert TaskSpec("qa5", "qa5", "random").labels == ("Mary", "Jeff", "Fred", "Bill", "football", "apple", "milk")
    for generator in ("qa1", "qa1-world", "qa2", "qa3", "qa4"):
        assert TaskSpec(generator, generator, "random").labels == LOCATIONS == LABELS[generator]


# ---------------------------------------------------------------------------------------------
# Facts in the input: random sentence starts, story order.

def check_placement(f: SampleFactory, sample, facts: list[np.ndarray]) -> None:
    """The sample holds exactly these facts, in this order, each whole at a sentence start of its noise window,
    and the question ends the last segment."""
    starts = set(f.corpus.sentence_starts.tolist())
    assert [fact.tokens.tolist() for fact in sample.facts] == [t.tolist() for t in facts]
    places = [(fact.segment, fact.offset) for fact in sample.facts]
    assert places == sorted(places)
    segments = [f.segment(sample, k) for k in range(sample.n_segments)]
    assert all(len(s) == f.content_length for s in segments)
    for k, fact in enumerate(sample.facts):
        assert sample.noise_starts[fact.segment] + fact.offset in starts
        where = fact.offset + sum(len(g.tokens) for g in sample.facts[:k] if g.segment == fact.segment)
        assert np.array_equal(segments[fact.segment][where:where + len(fact.tokens)], fact.tokens)
    assert np.array_equal(segments[-1][-len(sample.question):], sample.question)


@pytest.mark.parametrize("generator", ["qa1-world", "qa2", "qa3", "qa5"])
def test_facts_sit_at_sentence_starts_in_story_order(generator, synthetic_noise, tokenizer):
    task = TaskSpec(generator, generator, "random")
    f = SampleFactory(task, synthetic_noise.eval, tokenizer, 115)
    n_segments, spread, long = 4, 0, 0
    for i, sample in enumerate(f.sample_set("test", 0, n_segments, 30)):
        story = drawn_story(f, (0, 2, n_segments, i), n_segments)
        assert task.labels[sample.label] == story.answer
        check_placement(f, sample, [f.encode(t) for t in story.facts])
        spread += len(sample.fact_segments) > 1
        long += f.segments_needed(story) > 1
    assert spread > 20 and (generator == "qa1-world" or long > 5)


def long_story_file(folder: Path, n_facts: int = 40) -> Path:
    """A bAbI file of one story whose facts are told apart by a number (9 MiniLM tokens each)."""
    path = folder / "qa1_long_test.txt"
    lines = [f"{i} Mary moved to the office number {i} today." for i in range(1, n_facts + 1)]
    path.write_text("\n".join([*lines, f"{n_facts + 1} Where is Mary?\toffice\t{n_facts}"]) + "\n")
    return path


@pytest.mark.parametrize("position", ["random", "start"])
def test_a_story_of_40_facts_spreads_over_8_segments_in_order(position, synthetic_noise, tokenizer, tmp_path):
    path = long_story_file(tmp_path)
    f = SampleFactory(TaskSpec("long", "", position, facts_file=str(path)), synthetic_noise.eval, tokenizer, 64)
    story = read_babi(str(path))[0]
    facts = [f.encode(t) for t in story.facts]
    assert len(facts) == 40 and sum(map(len, facts)) > 5 * 64  # more than 5 segments of 64 tokens
    assert f.segments_needed(story) <= 8
    used = set()
    for sample in f.sample_set("test", 0, 8, 20):
        check_placement(f, sample, facts)
        used |= sample.fact_segments
        if position == "start":  # the story opens the input and fills segments one after another
            assert sample.facts[0].offset == 0 and all(fact.offset == 0 for fact in sample.facts)
            assert sorted(sample.fact_segments) == list(range(len(sample.fact_segments)))
    assert used == set(range(8 if position == "random" else f.segments_needed(story)))


def test_facts_in_last_keeps_a_long_story_in_the_last_segments(synthetic_noise, tokenizer, tmp_path):
    path = long_story_file(tmp_path)
    f = SampleFactory(TaskSpec("long", "", "random", facts_file=str(path)), synthetic_noise.eval, tokenizer, 64)
    facts = [f.encode(t) for t in read_babi(str(path))[0].facts]
    rng = np.random.default_rng(0)
    for _ in range(10):
        sample = f.draw(rng, 12, mix=TrainingMix(facts_in_last=8))
        check_placement(f, sample, facts)
        assert min(sample.fact_segments) >= 4
    # too long for 2 segments: it reaches back as far as it must
    squeezed = f.draw(rng, 12, mix=TrainingMix(facts_in_last=2))
    check_placement(f, squeezed, facts)
    assert max(squeezed.fact_segments) == 11 and min(squeezed.fact_segments) < 10


def test_a_story_longer_than_the_input_is_one_line_with_the_segments_it_needs(synthetic_noise, tokenizer, tmp_path):
    path = long_story_file(tmp_path)
    f = SampleFactory(TaskSpec("qa1", "", "random", facts_file=str(path)), synthetic_noise.eval, tokenizer, 64)
    need = f.segments_needed(read_babi(str(path))[0])
    with pytest.raises(UsageError) as error:
        f.sample_set("test", 0, need - 1, 3)
    message = str(error.value)
    assert f"{path} line 41 (40 facts" in message and f"needs at least {need} segments" in message
    assert "\n" not in message
    assert len(f.sample_set("test", 0, need, 3)) == 3


def test_generated_stories_too_long_for_the_input_are_drawn_again(synthetic_noise, tokenizer):
    f = SampleFactory(TaskSpec("qa3", "qa3", "random"), synthetic_noise.eval, tokenizer, 51)  # experiment=smoke
    short = f.sample_set("test", 0, 1, 30)
    assert all(sum(len(fact.tokens) for fact in s.facts) + len(s.question) <= 51 for s in short)
    longer = f.sample_set("test", 0, 6, 30)
    assert max(len(s.facts) for s in longer) > max(len(s.facts) for s in short)


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
    assert all(solve(s)[0] == s.answer for s in stories)  # the hand-written stories are consistent


def write_babi(path: Path, stories) -> None:
    lines = []
    for story in stories:
        lines += [f"{i} {fact}" for i, fact in enumerate(story.facts, 1)]
        lines.append(f"{len(story.facts) + 1} {story.question} \t{story.answer}\t1")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("generator", ["qa1-world", "qa2", "qa3", "qa5"])
def test_generated_stories_round_trip_through_the_babi_format(generator, tmp_path):
    stories = [GENERATORS[generator](np.random.default_rng(seed)) for seed in range(50)]
    path = tmp_path / f"{generator}_round_train.txt"
    write_babi(path, stories)
    assert list(read_babi(str(path), LABELS[generator])) == stories


def test_train_reads_the_train_file_and_evaluation_the_test_file(synthetic_noise, tokenizer, tmp_path):
    assert babi_split_files(str(TRAIN_FILE)) == (str(TRAIN_FILE), str(TEST_FILE))
    assert babi_split_files(str(TEST_FILE)) == (str(TRAIN_FILE), str(TEST_FILE))
    alone = tmp_path / "qa2_alone_train.txt"
    alone.write_text(TRAIN_FILE.read_text())
    assert babi_split_files(str(alone)) == (str(alone), str(alone))

    task = TaskSpec("qa2-file", "qa2", "random", facts_file=str(TRAIN_FILE))
    assert task.labels == LOCATIONS  # the generator's
    assert task.answers() == ("bedroom", "garden", "hallway", "kitchen", "office")  # of both files, sorted
    assert TaskSpec("qa2-file", "", "random", facts_file=str(TRAIN_FILE)).labels == task.answers()
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

    from rmt_cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        for name in ("memorize", "detect", "reasoning", "qa1", "qa2", "qa3", "qa5", "babilong"):
            assert compose("train", overrides=[f"task={name}"]).task.facts_file is None
        cfg = compose("train", overrides=["task=qa3", f"task.facts_file={TRAIN_FILE}"])
    spec = task_spec(cfg)
    assert spec.facts_file == str(TRAIN_FILE) and spec.generator == "qa3" and spec.fact_position == "random"


QA1 = LOCATIONS


@pytest.mark.parametrize("lines, labels, line, message", [
    (["1 Mary went to the kitchen.", "Mary moved to the office.", "2 Where is Mary?\toffice\t1"], QA1, 2,
     "expected 'ID text'"),
    (["1 Mary went to the kitchen.", "3 Where is Mary?\tkitchen\t1"], QA1, 2, "ID 3 after ID 1"),
    (["1 Mary went to the kitchen.", "2 Where is Mary?\t\t1"], QA1, 2, "expected a question line"),
    (["1 Mary went to the kitchen.", "2 John went to the office.", "3 Where is Mary?\tkitchen\tone"], QA1, 3,
     "expected a question line"),
    (["1 Mary went to the kitchen.", "2 Where is Mary?\tkitchen\t5"], QA1, 2, "expected a question line"),
    # an answer outside the task's labels would become a class of its own
    (["1 Mary went to the kitchen.", "2 Where is Mary?\tcellar\t1"], QA1, 2,
     "answer 'cellar' is not one of the task's labels"),
    # a TAB inside a fact would make it a question
    (["1 Mary went\tto the kitchen.", "2 Where is Mary?\tkitchen\t1"], QA1, 1, "a TAB inside a statement"),
    # "Bathroom" and "bathroom" as two classes
    (["1 Mary went to the bathroom.", "2 Where is Mary?\tBathroom\t1"], QA1, 2,
     "answer 'Bathroom' differs from the label 'bathroom' only in case"),
    (["1 Mary went to the bathroom.", "2 Where is Mary?\tbathroom\t1", "3 Where is Mary?\tBathroom\t1"], None, 3,
     "answer 'Bathroom' and 'bathroom' differ only in case"),
    # a question line without TABs would be taken as a fact
    (["1 Mary went to the kitchen.", "2 Where is Mary? kitchen 1", "3 Where is Mary?\tkitchen\t1"], QA1, 2,
     "a question without its answer"),
    # a file of another task: qa8's lists into qa2, or with the labels taken from the file
    (["1 Mary got the apple.", "2 Mary took the milk.", "3 What is Mary carrying?\tapple,milk\t1 2"], QA1, 3,
     "answer 'apple,milk' is not one of the task's labels"),
    (["1 Mary got the apple.", "2 Mary took the milk.", "3 What is Mary carrying?\tapple,milk\t1 2"], None, 3,
     "answer 'apple,milk' lists several answers"),
])
def test_a_malformed_file_is_one_line_naming_file_and_line(lines, labels, line, message, tmp_path):
    path = tmp_path / "qa1_bad_train.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError) as error:
        read_babi(str(path), labels)
    text = str(error.value)
    assert text.startswith(f"{path} line {line}: {message}") and "\n" not in text


def test_missing_or_question_free_files_are_clear_errors(tmp_path):
    with pytest.raises(RuntimeFailure, match="does not exist"):
        read_babi(str(tmp_path / "qa1_missing_train.txt"))
    empty = tmp_path / "qa1_statements_train.txt"
    empty.write_text("1 Mary went to the kitchen.\n")
    with pytest.raises(UsageError, match="no question lines"):
        read_babi(str(empty))


def test_a_relative_facts_file_is_stored_resolved_and_a_lone_file_is_announced(tmp_path, monkeypatch, capsys):
    (tmp_path / "stories").mkdir()
    alone = tmp_path / "stories" / "qa2_alone_train.txt"
    alone.write_text(TRAIN_FILE.read_text())
    monkeypatch.chdir(tmp_path)
    cfg = task_cfg(generator="qa2", facts_file="stories/qa2_alone_train.txt")
    spec = task_spec(cfg)
    assert spec.facts_file == cfg.task.facts_file == str(alone)
    note = capsys.readouterr().err
    assert f"{alone} has no qa2_alone_test.txt beside it" in note and "validation and test draw from" in note
    task_spec(task_cfg(generator="qa2", facts_file=str(TRAIN_FILE)))
    assert capsys.readouterr().err == ""  # a pair: nothing to say


# ---------------------------------------------------------------------------------------------
# Task configs, BABILong.

def task_cfg(**task):
    from rmt_cli.schema import TaskConfig, typed_node

    base = {"name": "t", "generator": "qa1", "fact_position": "random", "facts_file": None}
    return OmegaConf.create({"task": typed_node(TaskConfig, {**base, **task})})


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

def first_fitting_story(generator: str, seed, n_segments: int, tokenizer, content: int) -> Story:
    rng = np.random.default_rng(seed)
    while True:
        story = GENERATORS[generator](rng)
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (*story.facts, story.question)]
        if minimum_segments(lengths[:-1], lengths[-1], content) <= n_segments:
            return story


def test_preview_prints_a_sample_with_its_answer(tmp_path, tokenizer):
    result = rmt("preview", "task=qa3", "noise=synthetic", "backbone=tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    story = first_fitting_story("qa3", (0, 2, 1, 0), 1, tokenizer, content_length(128, 10))  # test sample 0, seed 0
    text = re.sub(r"[│\s]+", " ", result.stdout)  # the panels' text without their borders and line breaks
    assert f"answer: {story.answer}" in text and story.question.lower() in text and "segment 1/1" in text
    assert not any(tmp_path.iterdir())  # writes nothing


def test_preview_takes_segments_and_seed(tmp_path, tokenizer):
    result = rmt("preview", "task=qa5", "noise=synthetic", "backbone=tiny", "--segments", "3", "--seed", "7",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    story = first_fitting_story("qa5", (7, 2, 3, 0), 3, tokenizer, content_length(128, 10))
    assert f"answer: {story.answer}" in result.stdout and "segment 3/3" in result.stdout


# ---------------------------------------------------------------------------------------------
# Labels by name.

def test_a_permuted_label_order_scores_what_the_model_scores(synthetic_noise, tokenizer, tmp_path):
    import torch
    from conftest import tiny_bert

    from rmt_cli.engine import RecurrentMemory
    from rmt_cli.experiment import Experiment
    from rmt_cli.heads import ClassifyHead
    from rmt_cli.inference import accuracy, predict

    path = tmp_path / "qa5_generated_test.txt"
    write_babi(path, [GENERATORS["qa5"](np.random.default_rng(seed)) for seed in range(60)])
    trained = LABELS["qa5"]
    in_file = TaskSpec("qa5", "", "random", facts_file=str(path))  # the file's own labels: sorted
    mapped = TaskSpec("qa5", "", "random", facts_file=str(path), trained_labels=trained)
    assert in_file.labels != trained and sorted(in_file.labels) == sorted(trained)
    plain, by_name = (SampleFactory(t, synthetic_noise.eval, tokenizer, 115) for t in (in_file, mapped))
    n_segments = max(plain.segments_needed(story) for story in read_babi(str(path)))
    samples, named = plain.sample_set("test", 0, n_segments, 40), by_name.sample_set("test", 0, n_segments, 40)
    answers = [in_file.labels[s.label] for s in samples]
    assert [trained[s.label] for s in named] == answers  # each answer under the checkpoint's index for its name
    assert any(trained.index(a) != in_file.labels.index(a) for a in answers)

    torch.manual_seed(0)
    model = RecurrentMemory(tiny_bert(), memory_size=4, num_labels=len(trained), cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, dropout=0.0)
    with torch.no_grad():  # a model that answers "milk" (the checkpoint's last label) whatever it reads
        model.head[-1].weight.zero_()
        model.head[-1].bias.copy_(torch.arange(len(trained), dtype=torch.float))
    experiment = Experiment(model, tokenizer, mapped, ClassifyHead(), None, by_name, torch.device("cpu"))
    predicted = [trained[p] for p in predict(experiment, by_name, named, batch_size=8)]
    assert set(predicted) == {"milk"}
    score = np.mean([p == a for p, a in zip(predicted, answers, strict=True)])
    assert 0 < score < 1 and accuracy(experiment, by_name, named, batch_size=8) == score


def test_answers_the_checkpoint_has_no_label_for_are_one_line():
    with pytest.raises(UsageError, match=r"task t answers .*which the checkpoint's labels \(Mary, Jeff"):
        task_spec(task_cfg(generator="qa2"), trained_labels=list(LABELS["qa5"]))
    assert task_spec(task_cfg(generator="qa2"), trained_labels=list(LOCATIONS)).labels == LOCATIONS


# ---------------------------------------------------------------------------------------------
# qa1 end to end.

def test_qa1_trains_and_evaluates_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = rmt("train", "experiment=smoke", "task=qa1", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr
    assert "Curriculum finished" in result.stdout
    assert (run / "checkpoints" / "stage2-best" / "model.safetensors").is_file()
    evaluated = rmt("eval", "--checkpoint", str(run), "samples=16", "task.facts_file=qa1_handwritten_test.txt",
                    f"hydra.run.dir={tmp_path / 'eval'}", cwd=FIXTURES)
    assert evaluated.returncode == 0, evaluated.stderr
    assert re.search(r"qa1: accuracy \d+\.\d+% on 16 test samples of 2 segments", evaluated.stdout)
    stored = OmegaConf.load(tmp_path / "eval" / "config.yaml").task.facts_file
    assert stored == str(FIXTURES / "qa1_handwritten_test.txt")  # resolved against the folder it was typed in
    wrong = rmt("eval", "--checkpoint", str(run), "samples=4", "task=qa5", f"hydra.run.dir={tmp_path / 'wrong'}")
    assert wrong.returncode == 2
    lines = [line for line in wrong.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the checkpoint's labels" in lines[0], wrong.stderr


def test_the_hand_written_stories_are_right_and_in_the_real_shapes():
    from test_data import solve_relations

    qa1 = read_babi(str(FIXTURES / "qa1_handwritten_test.txt"), LOCATIONS)
    assert len(qa1) == 50 and sorted({len(s.facts) for s in qa1}) == [2, 4, 6, 8, 10]
    assert all(solve(s)[0] == s.answer for s in qa1)
    assert np.mean([solve(s)[1]["the person asked about moved more than once"] for s in qa1]) > 0.3
    qa4 = read_babi(str(FIXTURES / "qa4_handwritten_test.txt"), LOCATIONS)
    shapes = []
    for story in qa4:
        assert len(story.facts) == 2 and solve_relations(story.facts, story.question) == {story.answer}
        (x1, d1, y1), (x2, d2, y2) = [(w[1], w[3], w[6]) for w in (f.rstrip(".").split() for f in story.facts)]
        assert {d1, d2} <= {"north", "south"} or {d1, d2} <= {"east", "west"}  # one axis
        shapes.append("shared place" if y1 == y2 else "shared subject" if x1 == x2 else "chain")
    counts = {shape: shapes.count(shape) for shape in set(shapes)}
    assert len(qa4) == 42 and counts == {"shared place": 18, "chain": 18, "shared subject": 6}
    assert sum(q.question.split()[2] == "the" for q in qa4) > 15  # inverse questions: "What is the X east of?"
