"""Chained training inputs (a stage's chain_share / chain_steps, chains.py): the schedule, the parts, the memory a
chained row carries from step to step, and the checks on the stage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rmt_cli.chains import ChainedRows, ChainPlan, chain_part
from rmt_cli.heads import IGNORE, ClassifyHead


def plan(**changes) -> ChainPlan:
    return ChainPlan(**{"seed": 0, "stage": 2, "rank": 0, "rows": 8, "share": 0.5, "max_steps": (4, 4), "steps": 40,
                        **changes})


def test_every_chained_row_reads_chains_of_at_most_max_steps_each_with_its_fact_inside():
    chains = plan()
    start, fact = chains.schedule
    assert chains.chained == 4 and start.shape == fact.shape == (4, 40)
    lengths = set()
    for row in range(4):
        for first in np.unique(start[row]):
            steps = np.flatnonzero(start[row] == first)
            assert steps[0] == first and (np.diff(steps) == 1).all()  # a chain is consecutive steps
            assert (fact[row, steps] == fact[row, first]).all() and first <= fact[row, first] <= steps[-1]
            lengths.add(len(steps))
    assert lengths <= {1, 2, 3, 4} and max(lengths) == 4 and len(lengths) > 1
    assert chains.first_parts(0).all()
    assert plan(rows=2, share=0.9).chained == 1  # one row stays unchained: a batch always holds a scored row
    assert plan(rows=1).chained == 0 and plan(rows=1).first_parts(3).shape == (0,)
    np.testing.assert_array_equal(plan().schedule[0], start)  # a pure function of (seed, stage, rank, row)
    assert not np.array_equal(plan(stage=3).schedule[0], start)


def chain_lengths(chains: ChainPlan) -> list[tuple[int, int]]:
    """(first step, length) of every chain of every chained row."""
    start = chains.schedule[0]
    return [(int(first), int((start[row] == first).sum())) for row in range(chains.chained)
            for first in np.unique(start[row])]


def test_a_range_of_chain_steps_lets_the_longest_chain_grow_over_the_stage():
    growing = plan(max_steps=(2, 12), steps=200, rows=32)
    assert [growing.cap(first) for first in (0, 99, 199)] == [2, 6, 12]
    chains = chain_lengths(growing)
    assert all(length <= growing.cap(first) for first, length in chains)
    early = [length for first, length in chains if first < 50]
    late = [length for first, length in chains if first >= 150 and first + length < 200]  # not cut by the stage end
    assert max(early) <= 4 and max(late) > 8 and np.mean(late) > 2 * np.mean(early)
    # a fixed count draws what it drew before ranges existed: the same chains as [k, k]
    assert plan(max_steps=(4, 4)).cap(0) == plan(max_steps=(4, 4)).cap(39) == 4


def sample(label, fact_segments=(0,), question=(7, 8)):
    from rmt_cli.samples import PlacedFact, Sample

    facts = tuple(PlacedFact(segment, 0, np.array([1, 2])) for segment in fact_segments)
    return Sample(noise_starts=np.arange(3), facts=facts, question=np.array(question), label=label)


def test_a_part_before_the_fact_is_noise_not_scored_and_one_after_it_asks_the_facts_question():
    drawn, fact = sample(1, question=(1, 2)), sample(4, question=(5, 6, 7))
    assert chain_part(drawn, 3, 3, None) is drawn
    before = chain_part(drawn, 2, 3, None)
    assert before.facts == () and before.label == IGNORE and (before.noise_starts == drawn.noise_starts).all()
    after = chain_part(drawn, 5, 3, fact)
    assert after.facts == () and after.label == 4 and list(after.question) == [5, 6, 7]
    assert (after.noise_starts == drawn.noise_starts).all()
    # a fact in the fact's part's last segment was never read by the memory carried on: nothing to ask
    assert chain_part(drawn, 5, 3, sample(4, fact_segments=(0, 2))).label == IGNORE


def test_the_classifying_loss_leaves_out_rows_not_scored():
    class Fixed(torch.nn.Module):
        def forward(self, steps, **loop):
            from rmt_cli.engine import EngineOutput

            return EngineOutput(logits=steps[0], memory=torch.zeros(3))

    logits = torch.randn(4, 5)
    loss, _ = ClassifyHead().loss(Fixed(), [logits], torch.tensor([1, IGNORE, 3, IGNORE]))
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([1, 3])))


def test_the_engine_returns_the_memory_its_last_segment_read(tiny_engine):
    from test_engine import mixed_batch_steps

    steps = mixed_batch_steps([3, 2, 3])
    with torch.no_grad():
        out = tiny_engine(steps)
        before = tiny_engine(steps[:-1], batch=3)  # every row of the last step has read the steps before it
    torch.testing.assert_close(out.memory_before_last, before.memory)


def test_chained_rows_carry_their_memory_by_row_whatever_order_a_batch_sorts_them_in():
    from rmt_cli.batches import BatchPlan

    chains = ChainedRows(plan(rows=4, max_steps=(6, 6)))
    step = next(k for k in range(1, 40) if not chains.plan.first_parts(k - 1).any())  # every chained row continues
    lengths = [2, 5, 3, 1]
    batch = BatchPlan.right_aligned([dataclasses.replace(sample(0), noise_starts=np.arange(n)) for n in lengths])
    labels = torch.zeros(4, dtype=torch.long)
    assert chains.carried(batch, step, labels) is None  # nothing kept yet
    # rows 0 and 1 chain; a row past its fact with no memory kept is not scored until its chain ends
    past_fact = (step - 1) > chains.plan.fact_steps(step - 1)
    expected = np.zeros(4, dtype=bool)
    expected[:2] = past_fact
    np.testing.assert_array_equal((labels == IGNORE).numpy(), expected[batch.order])

    ended_with = torch.arange(4.0)[:, None, None].expand(4, 2, 3).clone()  # sorted row j ended with value j
    chains.keep(batch, ended_with)
    later = BatchPlan.right_aligned([dataclasses.replace(sample(0), noise_starts=np.arange(n))
                                     for n in [1, 4, 2, 6]])
    rows, memory = chains.carried(later, step + 1, torch.zeros(4, dtype=torch.long)) or (None, None)
    continuing = ~chains.plan.first_parts(step)
    for j, row in enumerate(later.order):
        assert bool(rows[j]) == (row < 2 and bool(continuing[row]))
        if rows[j]:
            kept_at = int(np.flatnonzero(batch.order == row)[0])  # where the row sat in the earlier batch
            assert float(memory[j, 0, 0]) == kept_at


@pytest.fixture
def detect_cfg():
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=["experiment=smoke", "trainer.device=cpu", "task=detect",
                                           "curriculum.stages=[{segments:1,steps:2},{segments:2,steps:6,"
                                           "chain_share:0.5,chain_steps:3}]"])


def test_a_chained_stage_carries_each_rows_memory_and_asks_its_facts_question_until_the_chain_ends(
        detect_cfg, tmp_path, monkeypatch):
    from test_resume import train_in_process

    from rmt_cli.engine import RecurrentMemory
    from rmt_cli.train import Trainer

    calls = []  # per training forward of stage 2: carried (rows, memory), memory before the last segment, labels
    forward, loss = RecurrentMemory.forward, ClassifyHead.loss
    labels_seen = []

    def recorded(self, steps, *args, **kwargs):
        out = forward(self, steps, *args, **kwargs)
        if self.training:
            calls.append((kwargs.get("carried"), out.memory_before_last.detach().clone()))
        return out

    def recorded_loss(self, model, steps, labels, **loop):
        labels_seen.append(labels.clone())
        return loss(self, model, steps, labels, **loop)

    plans = []
    host_batch = Trainer.host_batch
    monkeypatch.setattr(RecurrentMemory, "forward", recorded)
    monkeypatch.setattr(ClassifyHead, "loss", recorded_loss)
    monkeypatch.setattr(Trainer, "host_batch", lambda self, stage, position, step: plans.append(
        (stage.number, step, host_batch(self, stage, position, step))) or plans[-1][2])
    train_in_process(detect_cfg, tmp_path / "run")
    stage2 = calls[2:]
    assert len(stage2) == 6 and stage2[0][0] is None
    chains = ChainPlan(0, 2, 0, 4, 0.5, (3, 3), 6)
    seen = set()  # which cases this schedule exercised
    built = {step: batch for number, step, (batch, _) in plans if number == 2}
    for step in range(2, 7):
        batch, earlier = built[step], built[step - 1]
        continuing = ~chains.first_parts(step - 1)
        carried = stage2[step - 1][0]
        for j, row in enumerate(batch.order):
            chained_on = row < 2 and bool(continuing[row])
            assert carried is not None or not chained_on
            if chained_on:
                seen.add("carried")
                assert bool(carried[0][j])
                at = int(np.flatnonzero(earlier.order == row)[0])
                torch.testing.assert_close(carried[1][j], stage2[step - 2][1][at])
            elif carried is not None:
                assert not bool(carried[0][j])
            part = batch.samples[j]
            fact_step = int(chains.fact_steps(step - 1)[row]) if row < 2 else step - 1
            if step - 1 < fact_step:
                seen.add("before")
                assert part.facts == () and int(labels_seen[step + 1][j]) == IGNORE
            elif step - 1 > fact_step:
                with_fact = built[fact_step + 1].samples[int(np.flatnonzero(built[fact_step + 1].order == row)[0])]
                kept = max(f.segment for f in with_fact.facts) < with_fact.n_segments - 1
                assert part.facts == () and part.label == (with_fact.label if kept else IGNORE) and with_fact.facts
                assert (part.question == with_fact.question).all()
                seen.add("after")
    assert seen == {"carried", "before", "after"}


def test_a_chained_stage_is_checked(detect_cfg):
    from omegaconf import OmegaConf

    from rmt_cli.config_check import check
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.errors import UsageError

    def stages(**last):
        return OmegaConf.merge(detect_cfg, {"curriculum": {"stages": [{"segments": 2, "steps": 2, **last}]}})

    with pytest.raises(UsageError, match="chain_share=1 must be a number from 0 up to"):
        check(stages(chain_share=1), "train")
    with pytest.raises(UsageError, match="stage 1 sets both carry_memory and chain_share"):
        check(stages(chain_share=0.5, carry_memory=0.5), "train")
    with pytest.raises(UsageError, match="chain_share needs task.head=classify or pooler"):
        check(OmegaConf.merge(stages(chain_share=0.5), {"task": {"head": "generate"}}), "train")
    check(detect_cfg, "train")
    assert [(s.chain_share, s.chain_steps) for s in curriculum_stages(detect_cfg)] == [(0.0, (16, 16)), (0.5, (3, 3))]
    ranged = stages(chain_share=0.5, chain_steps=[2, 24])
    check(ranged, "train")
    assert curriculum_stages(ranged)[0].chain_steps == (2, 24)
    with pytest.raises(UsageError, match=r"chain_steps=\[24, 2\] must be a count ≥ 1 or a range \[lo, hi\]"):
        check(stages(chain_share=0.5, chain_steps=[24, 2]), "train")
