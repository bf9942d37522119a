import json
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.cli import rmt

from rmt_cli.heads import ClassifyHead
from rmt_cli.inference import predict
from rmt_cli.retention import (answer_twin, answered_from, bin_label, bin_of, held_segments, probe_points, summarise,
                               trace)
from rmt_cli.samples import PlacedFact, Sample, SampleFactory
from rmt_cli.task_spec import TaskSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_probe_points_spread_on_a_log_scale_and_end_with_the_whole_input():
    assert probe_points(2, 24) == [0]
    assert probe_points(1, 24) == []
    assert probe_points(512, 1) == [510]
    points = probe_points(512, 20)
    assert points[0] == 0 and points[-1] == 510 and points == sorted(set(points)) and len(points) <= 21
    gaps = np.diff(points)
    assert gaps[0] <= 2 and gaps[-1] > 50  # dense near the start, sparse near the end
    assert probe_points(8, 100) == list(range(7))  # more points than segments: every one


def sample_with_facts(segments: list[int], n_segments: int = 10) -> Sample:
    facts = tuple(PlacedFact(s, 0, np.array([5])) for s in segments)
    return Sample(np.zeros(n_segments, dtype=np.int64), facts, np.array([1]), 0)


def test_which_answers_count_and_how_long_the_fact_was_held():
    sample = sample_with_facts([3, 6])
    assert not answered_from(sample, 5)  # the second fact is not read yet
    assert answered_from(sample, 6) and held_segments(sample, 6) == 4  # the first fact crossed 4 boundaries
    last_segment_fact = sample_with_facts([2, 9])
    assert not answered_from(last_segment_fact, 7)
    assert answered_from(last_segment_fact, 8) and held_segments(last_segment_fact, 8) == 7  # the whole input
    in_question_segment = sample_with_facts([9])
    assert answered_from(in_question_segment, 8) and held_segments(in_question_segment, 8) == 0


def test_bins_of_segment_counts():
    assert [bin_of(n) for n in (0, 1, 3, 4, 15, 16, 4095, 4096)] == [0, 1, 1, 2, 2, 3, 6, 7]
    assert [bin_label(k) for k in range(4)] == ["0", "1-3", "4-15", "16-63"]


def test_summary_files_answers_by_where_and_how_long():
    rows = [{"before": 0, "held": 2, "correct": True, "signal": 0.5},
            {"before": 1, "held": 3, "correct": False, "signal": 0.0},
            {"before": 2, "held": 20, "correct": True, "signal": 0.2},
            {"before": 2, "held": 30, "correct": False, "signal": None},
            {"before": 3, "held": 40, "correct": False, "signal": 0.001}]
    table = summarise(rows)
    assert table["0"]["1-3"] == {"answers": 1, "accuracy": 1.0, "in_memory": 1.0, "signal": 0.5}
    assert table["1-3"]["1-3"] == {"answers": 1, "accuracy": 0.0, "in_memory": 0.0, "signal": 0.0}
    # of those with a twin: one of two holds the answer (0.001 is rounding, not a memory), the median signal
    assert table["1-3"]["16-63"] == {"answers": 3, "accuracy": 0.3333, "in_memory": 0.5, "signal": 0.1005}


@pytest.fixture
def detect_factory(synthetic_noise, tokenizer):
    return SampleFactory(TaskSpec("detect", "qa1", "random"), synthetic_noise.eval, tokenizer, 40)


def test_twin_swaps_the_answer_in_the_fact_and_nothing_else(detect_factory, tokenizer):
    for sample in detect_factory.sample_set("test", 0, 6, 8):
        twin = answer_twin(detect_factory, sample)
        labels = detect_factory.task.labels
        assert twin.label != sample.label
        assert np.array_equal(twin.noise_starts, sample.noise_starts) and twin.question is sample.question
        (fact,), (twin_fact,) = sample.facts, twin.facts
        assert (twin_fact.segment, twin_fact.offset) == (fact.segment, fact.offset)
        text, twin_text = tokenizer.decode(fact.tokens), tokenizer.decode(twin_fact.tokens)
        assert twin_text == text.replace(labels[sample.label], labels[twin.label])
        for index in range(6):  # only the fact's segment differs
            same = np.array_equal(detect_factory.segment(sample, index), detect_factory.segment(twin, index))
            assert same == (index != fact.segment)


def test_twin_of_a_reasoning_story_names_a_place_the_story_does_not(synthetic_noise, tokenizer):
    factory = SampleFactory(TaskSpec("reasoning", "qa4", "random"), synthetic_noise.eval, tokenizer, 60)
    for sample in factory.sample_set("test", 0, 3, 8):
        twin = answer_twin(factory, sample)
        story_words = " ".join((*sample.story.facts, sample.story.question))
        assert factory.task.labels[twin.label] not in story_words
        assert len(twin.facts) == len(sample.facts)
    assert answer_twin(factory, sample_with_facts([1])) is None  # no story: nothing to swap


def test_trace_answers_the_whole_input_as_predict_does(tiny_engine, detect_factory):
    experiment = SimpleNamespace(model=tiny_engine, device=torch.device("cpu"), autocast=nullcontext,
                                 head=ClassifyHead())
    samples = detect_factory.sample_set("test", 0, 12, 6)
    probes = probe_points(12, 5)
    read = []
    rows = trace(experiment, detect_factory, samples, probes, first_index=10, progress=read.append)
    assert read == list(range(11))  # told of every segment before the question segment
    whole = {row["sample"]: row["predicted"] for row in rows if row["read_segments"] == 12}
    expected = predict(experiment, detect_factory, samples, batch_size=6)
    assert [whole[10 + i] for i in range(6)] == expected.tolist()
    for row in rows:
        sample = samples[row["sample"] - 10]
        assert answered_from(sample, row["read_segments"] - 2)
        assert row["before"] == min(sample.fact_segments) and row["correct"] == (row["predicted"] == sample.label)
        if row["held"] >= 1:  # the fact was read before the question segment: the twin's memory differs
            assert row["signal"] > 0
    early = [row for row in rows if row["read_segments"] < 12]
    assert early and all(row["read_segments"] - 2 in probes for row in early)


def test_trace_signal_is_zero_when_the_twin_is_the_same_input(tiny_engine, detect_factory, monkeypatch):
    import rmt_cli.retention as retention

    monkeypatch.setattr(retention, "answer_twin", lambda factory, sample: sample)
    experiment = SimpleNamespace(model=tiny_engine, device=torch.device("cpu"), autocast=nullcontext,
                                 head=ClassifyHead())
    rows = trace(experiment, detect_factory, detect_factory.sample_set("test", 0, 8, 4), probe_points(8, 4))
    assert rows and all(row["signal"] == 0 for row in rows)


@pytest.fixture(scope="module")
def detect_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("detect") / "run"
    result = rmt("train", "experiment=smoke", "task=detect", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def test_retention_command_writes_tables_and_plot(detect_run, tmp_path):
    result = rmt("retention", "--checkpoint", str(detect_run), "--max-segments", "16", "--probes", "6",
                 "--samples", "5", "--batch-size", "3", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "retention.png").read_bytes()[:8] == PNG_MAGIC
    report = json.loads((tmp_path / "retention.json").read_text())
    assert report["segments"] == 16 and report["samples"] == 5 and report["probes"][-1] == 16
    assert report["task"] == "detect" and 0 <= report["accuracy_whole_input"] <= 1
    answers = sum(cell["answers"] for row in report["table"].values() for cell in row.values())
    lines = (tmp_path / "retention.csv").read_text().splitlines()
    assert len(lines) == 1 + answers and lines[0].startswith("sample,label,before")
    assert "accuracy (answers)" in result.stdout and "answer still in memory" in result.stdout
