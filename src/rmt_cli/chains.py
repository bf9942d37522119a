"""Chained training inputs (a curriculum stage's `chain_share` and `chain_steps`): one long input read over several
training steps, so that a memory is trained in the states a test input of thousands of segments takes it to.

A chained row of the batch reads, step after step, the parts of one long input: its memory carries on from the step
before (detached: truncated BPTT at step boundaries), entering each step as it was before the previous step's last
segment, the one that holds the question, so the memory never reads a question before the input's end. A chain of L
steps holds one fact, in the part read at step f (drawn uniformly, as a test input's fact lies anywhere in it):
- before f, fact-free noise, not scored (the memory has nothing to answer yet: it only reads noise);
- at f, the training sample drawn for that row and step as for any row, its fact where it was drawn;
- after f, fact-free noise ending with the question of the part read at f, scored on its answer (unless that
  part held a fact in its last segment, which the memory carried on never read: then not scored either).
So a fact is taken in after up to L - 1 parts of noise and kept through up to L - 1 more, L × tens of segments,
where the longest training input of a stage is tens of segments. A chain's first part starts from the initial
memory; L is drawn uniformly from 1 to `chain_steps` per chain (with `chain_steps: [lo, hi]`, from 1 to a cap that
grows linearly from lo for chains begun at the stage's start to hi for those begun at its end, so that the stage's
first chains keep a fact through a few parts and its last through up to hi - 1).

Which rows chain, and every chain's L and f, follow from (seed, stage, rank, row), and the fact's part is the training
sample of a known index: like samples, a chain's parts are pure functions of the step, so a batch built ahead equals
one built now. The memory is not saved: after a resume, a chain's rows past their first part start from the initial
memory and are not scored until their next chain begins.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch

from rmt_cli.batches import BatchPlan
from rmt_cli.heads import IGNORE
from rmt_cli.samples import Sample


@dataclass(frozen=True)
class ChainPlan:
    """The chains of one stage on one rank: the first `chained` rows of each local batch chain."""

    seed: int
    stage: int
    rank: int
    rows: int  # rows of this rank's batch
    share: float
    max_steps: tuple[int, int]  # the most steps of a chain begun at the stage's first step, and at its last
    steps: int  # steps of the stage

    @property
    def chained(self) -> int:
        """At least one row stays unchained, so that a batch always holds a scored row."""
        return min(round(self.share * self.rows), self.rows - 1)

    @cached_property
    def schedule(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, fact) [chained rows, stage steps]: for each row and 0-based step of the stage, the step its chain
        began at and the step its fact is read at."""
        start = np.zeros((self.chained, self.steps), dtype=np.int64)
        fact = np.zeros((self.chained, self.steps), dtype=np.int64)
        for row in range(self.chained):
            rng = np.random.default_rng([self.seed, self.stage, self.rank, row])
            first = 0
            while first < self.steps:
                length = min(int(rng.integers(1, self.cap(first) + 1)), self.steps - first)  # the stage ends it
                start[row, first:first + length] = first
                fact[row, first:first + length] = first + int(rng.integers(length))
                first += length
        return start, fact

    def cap(self, first: int) -> int:
        """The most steps of a chain begun at 0-based step `first`: lo, growing linearly to hi at the stage's end."""
        lo, hi = self.max_steps
        return lo + (hi - lo) * first // max(self.steps - 1, 1)

    def first_parts(self, step: int) -> np.ndarray:
        """[chained] bool: rows whose chain begins at this 0-based step (they start from the initial memory)."""
        return self.schedule[0][:, step] == step

    def fact_steps(self, step: int) -> np.ndarray:
        """[chained] the 0-based step at which each row's chain reads its fact."""
        return self.schedule[1][:, step]


def chain_part(drawn: Sample, step: int, fact_step: int, fact_sample: Sample | None) -> Sample:
    """What a chained row reads at `step`: the sample drawn for it (`drawn`) at the fact's step; its noise, without
    facts and not scored, before it; its noise without facts, ending with `fact_sample`'s question, after it."""
    if step == fact_step:
        return drawn
    if step < fact_step:
        return dataclasses.replace(drawn, facts=(), label=IGNORE, story=None)
    assert fact_sample is not None, "a part after the fact asks the fact's question"
    # The memory goes on as it was before a part's last segment: a fact placed in that segment was never kept.
    kept = all(fact.segment < fact_sample.n_segments - 1 for fact in fact_sample.facts)
    return dataclasses.replace(drawn, facts=(), question=fact_sample.question, story=fact_sample.story,
                               label=fact_sample.label if kept else IGNORE)


class ChainedRows:
    """The chained rows of one stage on one rank, for the trainer: their parts (host side, a pure function of the
    step), the memory they carry from step to step and the rows not scored after a resume.

    Rows are the caller's order (the order samples were drawn in); a BatchPlan sorts them by length, so memory is kept
    by caller row and handed to each step in its plan's order."""

    def __init__(self, plan: ChainPlan):
        self.plan = plan
        self.memory: torch.Tensor | None = None  # [rows, m, hidden] what each row's last segment read, by caller row
        self.unscored = np.zeros(plan.chained, dtype=bool)  # rows whose chain lost its memory (resume) until it ends

    def parts(self, samples: list[Sample], step: int, fact_sample: Callable[[int, int], Sample]) -> list[Sample]:
        """The batch drawn for 1-based `step` with each chained row's part in place of its sample; fact_sample(row,
        steps_back) is the sample drawn for that row that many steps before."""
        k, facts = step - 1, self.plan.fact_steps(step - 1)
        parts = list(samples)
        for row in range(self.plan.chained):
            fact = fact_sample(row, k - int(facts[row])) if k > facts[row] else None
            parts[row] = chain_part(samples[row], k, int(facts[row]), fact)
        return parts

    def carried(self, batch: BatchPlan, step: int, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(rows, memory) in `batch`'s order for the engine's `carried`: the chained rows past their chain's first
        part start from the memory they kept. Without a kept memory (a stage's first step, after a resume) they start
        from the initial memory, and a row that had read its fact already is not scored (its labels entry is set to
        IGNORE in place) until its chain ends."""
        if not self.plan.chained:  # a batch too small to chain a row
            return None
        k = step - 1
        continuing = ~self.plan.first_parts(k)
        self.unscored &= continuing
        if self.memory is None:
            self.unscored |= continuing & (k > self.plan.fact_steps(k))
        # per row of the batch (sorted by length): the caller row it holds, padded with unchained rows' False
        chained = batch.order < self.plan.chained
        row_of = np.where(chained, batch.order, 0)
        labels[torch.from_numpy(chained & self.unscored[row_of]).to(labels.device)] = IGNORE
        carried = chained & continuing[row_of]
        if self.memory is None or not carried.any():
            return None
        order = torch.from_numpy(batch.order).to(self.memory.device)
        return torch.from_numpy(carried).to(self.memory.device), self.memory[order]

    def keep(self, batch: BatchPlan, memory_before_last: torch.Tensor | None) -> None:
        """Keep the memory each row's last segment read (in `batch`'s order), detached, by caller row."""
        assert memory_before_last is not None, "a training step's segments come as a list"
        inverse = torch.from_numpy(np.argsort(batch.order)).to(memory_before_last.device)
        self.memory = memory_before_last.detach()[inverse]
