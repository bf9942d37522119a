"""Noise-primed rows (a stage's noise_primed / primed_segments, primed.py): the noise the pool reads, the memories
it keeps and restarts, and the rows of a training step that start from them."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

import rmt_cli.primed as primed
from rmt_cli.primed import PrimedPool
from rmt_cli.samples import SampleFactory
from rmt_cli.task_spec import TaskSpec


@pytest.fixture
def factory(synthetic_noise, tokenizer):
    return SampleFactory(TaskSpec("detect", "qa1", "random"), synthetic_noise.train, tokenizer, 40)


def test_noise_segments_are_windows_of_the_noise_and_nothing_else(factory):
    segments = factory.noise_segments(np.random.default_rng(0), 3, 5)
    assert segments.shape == (5, 3, 40)
    windows = {tuple(factory.corpus.tokens[start:start + 40]) for start in factory.window_starts}
    assert all(tuple(row) in windows for segment in segments for row in segment)
    again = factory.noise_segments(np.random.default_rng(0), 3, 5)
    np.testing.assert_array_equal(segments, again)


def recorded_noise(factory, monkeypatch) -> list[np.ndarray]:
    noise: list[np.ndarray] = []
    draw = SampleFactory.noise_segments

    def recorded(self, rng, rows, n_segments):
        noise.append(draw(self, rng, rows, n_segments))
        return noise[-1]

    monkeypatch.setattr(SampleFactory, "noise_segments", recorded)
    return noise


def read(model, memory, segments):
    with torch.no_grad():
        for tokens in segments:
            memory, _, _ = model.read_segment(memory, torch.from_numpy(tokens))
    return memory


def test_the_pool_reads_only_noise_step_after_step(tiny_engine, factory, monkeypatch):
    monkeypatch.setattr(primed, "RESTART_STEPS", 10**9)  # no restart
    noise = recorded_noise(factory, monkeypatch)
    pool = PrimedPool(seed=0, stage=2, rank=0, rows=8, share=0.5, segments=(3, 3), steps=10)
    assert pool.rows.sum() == 4
    # which rows are primed is a pure function of the pool's seeds
    np.testing.assert_array_equal(PrimedPool(0, 2, 0, 8, 0.5, (3, 3), 10).rows, pool.rows)
    assert any(not np.array_equal(PrimedPool(0, stage, 0, 8, 0.5, (3, 3), 10).rows, pool.rows) for stage in range(3, 9))
    rows, memory = pool.carried(tiny_engine, factory, 1, torch.device("cpu"), nullcontext())
    assert rows.tolist() == pool.rows.tolist() and memory.shape == (8, 4, 32)
    expected = read(tiny_engine, tiny_engine.start_memory(4), noise[0])
    torch.testing.assert_close(memory[rows], expected)
    assert (memory[~rows] == 0).all()  # unprimed rows: the engine starts them from the initial memory
    _, memory = pool.carried(tiny_engine, factory, 2, torch.device("cpu"), nullcontext())
    torch.testing.assert_close(memory[rows], read(tiny_engine, expected, noise[1]))
    assert not np.array_equal(noise[0], noise[1])  # each step reads noise of its own


def test_a_restarted_memory_reads_only_the_noise_of_its_step(tiny_engine, factory, monkeypatch):
    monkeypatch.setattr(primed, "RESTART_STEPS", 1)  # every memory restarts every step
    noise = recorded_noise(factory, monkeypatch)
    pool = PrimedPool(seed=0, stage=2, rank=0, rows=4, share=1.0, segments=(2, 2), steps=10)
    for step in (1, 2):
        rows, memory = pool.carried(tiny_engine, factory, step, torch.device("cpu"), nullcontext())
    assert rows.all()
    torch.testing.assert_close(memory, read(tiny_engine, tiny_engine.start_memory(4), noise[1]))
    unprimed = PrimedPool(0, 2, 0, 4, 0.0, (2, 2), 10)
    assert unprimed.carried(tiny_engine, factory, 1, torch.device("cpu"), nullcontext()) is None



def test_growing_primed_segments_read_lo_at_the_first_step_and_hi_at_the_last(tiny_engine, factory, monkeypatch):
    noise = recorded_noise(factory, monkeypatch)
    pool = PrimedPool(seed=0, stage=2, rank=0, rows=4, share=0.5, segments=(2, 8), steps=7)
    assert [pool.segments_at(step) for step in range(1, 8)] == [2, 3, 4, 5, 6, 7, 8]
    for step in (1, 4, 7):
        pool.carried(tiny_engine, factory, step, torch.device("cpu"), nullcontext())
    assert [len(segments) for segments in noise] == [2, 5, 8]
    assert PrimedPool(0, 2, 0, 4, 0.5, (3, 9), 1).segments_at(1) == 3  # a one-step stage reads lo

@pytest.fixture
def primed_cfg():
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=["experiment=smoke", "trainer.device=cpu", "task=detect",
                                           "curriculum.stages=[{segments:1,steps:2},{segments:[2,3],steps:4,"
                                           "noise_primed:0.5,primed_segments:[1,3]}]"])


def test_a_primed_stage_starts_its_primed_rows_from_the_pool(primed_cfg, tmp_path, monkeypatch):
    from test_resume import train_in_process

    from rmt_cli.engine import RecurrentMemory

    carried, pools = [], []
    forward, carried_of = RecurrentMemory.forward, PrimedPool.carried

    def recorded_forward(self, steps, *args, **kwargs):
        if self.training:
            carried.append(kwargs.get("carried"))
        return forward(self, steps, *args, **kwargs)

    def recorded_pool(self, *args):
        out = carried_of(self, *args)
        pools.append((self.rows.copy(), self.memory.clone(), self.segments_at(args[2])))
        return out

    monkeypatch.setattr(RecurrentMemory, "forward", recorded_forward)
    monkeypatch.setattr(PrimedPool, "carried", recorded_pool)
    metrics = train_in_process(primed_cfg, tmp_path / "run")
    assert carried[:2] == [None, None]  # stage 1 primes nothing
    assert len(carried[2:]) == len(pools) == 4
    assert [segments for _, _, segments in pools] == [1, 1, 2, 3]  # [1, 3] over the stage's 4 steps
    for (rows, memory), (pool_rows, pool_memory, _) in zip(carried[2:], pools, strict=True):
        assert rows.tolist() == pool_rows.tolist() and rows.sum() == 2
        torch.testing.assert_close(memory[rows], pool_memory)
    assert any(row.get("stage") == 2 and row.get("kind") == "val" for row in metrics)


def test_a_primed_stage_that_can_leave_at_advance_at_is_named_and_no_other(primed_cfg):
    from omegaconf import OmegaConf

    from rmt_cli.curriculum import curriculum_cautions, curriculum_stages

    assert curriculum_cautions(curriculum_stages(primed_cfg)) == []  # primed, no advance_at
    cfg = primed_cfg.copy()
    OmegaConf.update(cfg, "curriculum.stages.0.advance_at", 0.9)  # advance_at, not primed
    OmegaConf.update(cfg, "curriculum.stages.1.advance_at", 0.98)
    (caution,) = curriculum_cautions(curriculum_stages(cfg))
    assert caution.startswith("stage 2: advance_at 0.98 with noise_primed 0.5: ")
    assert caution.endswith("leave advance_at out of that stage to train them")
    OmegaConf.update(cfg, "curriculum.stages.1.advance_at", None)
    OmegaConf.update(cfg, "curriculum.advance_at", 0.95)  # the curriculum's own value reaches the stage too
    (caution,) = curriculum_cautions(curriculum_stages(cfg))
    assert caution.startswith("stage 2: advance_at 0.95 with noise_primed 0.5: ")
