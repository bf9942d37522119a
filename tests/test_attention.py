import json

import numpy as np
import pytest
from helpers.cli import rmt

from rmt_cli.attention import (CLS, FACT, GROUPS, MEMORY, OTHER, QUESTION, SEP, capture_sample, fact_segments,
                               fact_spans, group_attention, memory_change, pick_roles, position_groups,
                               ranked_segments)
from rmt_cli.samples import PlacedFact, Sample, SampleFactory
from rmt_cli.task_spec import TaskSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def constructed_sample():
    facts = (PlacedFact(1, 3, np.array([101, 102])), PlacedFact(1, 10, np.array([103, 104, 105])),
             PlacedFact(3, 0, np.array([106])))
    return Sample(noise_starts=np.zeros(5, dtype=np.int64), facts=facts, question=np.array([7, 8]), label=0)


def test_fact_segments_of_a_constructed_sample():
    sample = constructed_sample()
    assert fact_segments(sample) == [1, 3]
    assert fact_segments(Sample(np.zeros(3, dtype=np.int64), (), np.array([1]), 0)) == []
    # A fact lands after the facts inserted before it in the same segment.
    assert fact_spans([f for f in sample.facts if f.segment == 1], 40) == [(3, 5), (12, 15)]
    assert pick_roles(sample) == {"write": 1, "keep": 2, "read": 4}
    only_last = Sample(np.zeros(2, dtype=np.int64), (PlacedFact(1, 0, np.array([5])),), np.array([1]), 0)
    assert pick_roles(only_last) == {"write": 1, "keep": 0, "read": 1}


def test_group_labels_follow_the_segment_layout():
    sample = constructed_sample()
    memory, content = 4, 20
    labels = position_groups(memory, content, [f for f in sample.facts if f.segment == 1], question_length=2)
    assert len(labels) == 1 + memory + 1 + content + 1
    assert labels[0] == CLS and labels[1:5] == [MEMORY] * 4 and labels[5] == SEP and labels[-1] == SEP
    first = 6  # content starts after [CLS], 4 memory positions and [SEP]
    fact_positions = [i - first for i, g in enumerate(labels) if g == FACT]
    assert fact_positions == [3, 4, 12, 13, 14]
    assert [i - first for i, g in enumerate(labels) if g == QUESTION] == [18, 19]
    assert labels.count(OTHER) == content - 5 - 2
    assert position_groups(2, 3, ()) == [CLS, MEMORY, MEMORY, SEP, OTHER, OTHER, OTHER, SEP]


def test_fact_positions_match_the_composed_segment(synthetic_noise, tokenizer):
    factory = SampleFactory(TaskSpec("reasoning", "qa4", "random"), synthetic_noise.eval, tokenizer, 60)
    checked = 0
    for sample in factory.sample_set("test", 0, 3, 12):
        for segment in fact_segments(sample):
            tokens = factory.segment(sample, segment)
            here = [f for f in sample.facts if f.segment == segment]
            for fact, (start, end) in zip(sorted(here, key=lambda f: f.offset), fact_spans(here, len(tokens)),
                                          strict=False):
                assert np.array_equal(tokens[start:end], fact.tokens)
                checked += 1
    assert checked >= 12


def test_memory_change_metric():
    rng = np.random.default_rng(0)
    state = rng.normal(size=(4, 8))
    assert memory_change([state, state.copy(), state.copy()]) == [0.0, 0.0]
    changes = memory_change([state, 2 * state, -2 * state])
    assert changes == pytest.approx([1.0, 2.0])
    assert ranked_segments([9.0, 0.1, 0.5, 0.2], facts=[2, 3]) == ([2, 3], 2)
    assert ranked_segments([9.0, 0.1, 0.5], facts=[0]) == ([2], 0)  # segment 0 is ranked apart
    assert ranked_segments([3.0], facts=[0]) == ([0], 1)


def test_group_attention_of_a_uniform_map():
    labels = position_groups(2, 6, (PlacedFact(0, 1, np.array([1, 2])),))
    size = len(labels)
    uniform = np.full((size, size), 1 / size)
    share = group_attention(uniform, labels, "share")
    per_token = group_attention(uniform, labels, "per_token")
    present = [GROUPS.index(g) for g in (CLS, MEMORY, FACT, OTHER, SEP)]
    assert np.allclose(share[np.ix_(present, present)].sum(axis=1), 1.0)
    assert share[GROUPS.index(MEMORY), GROUPS.index(FACT)] == pytest.approx(2 / size)
    assert np.allclose(per_token[np.ix_(present, present)], 1 / size)
    assert np.isnan(share[GROUPS.index(QUESTION)]).all()  # no question in this segment


def test_capture_gives_one_map_per_segment(tiny_engine, synthetic_noise, tokenizer):
    content = 40
    factory = SampleFactory(TaskSpec("reasoning", "qa4", "random"), synthetic_noise.eval, tokenizer, content)
    sample = factory.sample_set("test", 0, 3, 1)[0]
    capture = capture_sample(tiny_engine, factory, sample, layer=None, head=None)
    size = 1 + tiny_engine.memory_size + 1 + content + 1
    assert len(capture.maps) == 3 and all(m.shape == (size, size) for m in capture.maps)
    assert all(np.allclose(m.sum(axis=1), 1.0, atol=1e-4) for m in capture.maps)
    assert len(capture.memories) == 4 and capture.memories[0].shape == (tiny_engine.memory_size, 32)
    assert all(len(labels) == size for labels in capture.labels)
    one = capture_sample(tiny_engine, factory, sample, layer=1, head=0)
    assert one.maps[0].shape == (size, size) and not np.allclose(one.maps[0], capture.maps[0])
    # The capture switches to eager attention only while it runs; memory matches the engine's forward pass.
    assert tiny_engine.backbone.config._attn_implementation != "eager"
    import torch

    steps = [torch.from_numpy(factory.segment(sample, i).astype(np.int64))[None] for i in range(3)]
    with torch.inference_mode():
        memory = tiny_engine(steps).memory[0].numpy()
    assert np.allclose(memory, capture.memories[-1], atol=1e-5)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = rmt("train", "experiment=smoke", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def test_attention_command_writes_plots_and_numbers(smoke_run, tmp_path):
    result = rmt("attention", "--checkpoint", str(smoke_run), "--samples", "2", "task=reasoning",
                 "task.segments=4", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    for name in ("attention.png", "attention_tokens.png", "memory_change.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name
    report = json.loads((tmp_path / "attention.json").read_text())
    assert report["segments"] == 4 and report["task"] == "reasoning" and len(report["samples"]) == 2
    sample = report["samples"][0]
    assert len(sample["memory_change"]) == 4 and sample["fact_segments"]
    assert set(sample["roles"]) >= {"write", "read"} and sample["roles"]["read"]["segment"] == 3
    assert len(sample["roles"]["write"]["share"]) == len(GROUPS)
    size = 1 + report["memory_size"] + 1 + report["content_length"] + 1
    assert np.array(report["token_map"]["attention"]).shape == (size, size)
    assert "memory rows give" in result.stdout and "[CLS] puts" in result.stdout
    assert "changed memory most" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--layer", "2"], "--layer 2: the backbone has 2 layers"),
    (["--head", "5"], "--head 5: the backbone has 2 attention heads"),
    (["task.segments=0"], "task.segments=0 must be at least 1"),
])
def test_bad_options_are_one_line(smoke_run, tmp_path, args, message):
    result = rmt("attention", "--checkpoint", str(smoke_run), *args, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_checkpoint_is_one_line(tmp_path):
    result = rmt("attention", "--checkpoint", str(tmp_path / "no-run"), f"hydra.run.dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
