"""Batches of samples of different lengths, right-aligned so every question lands on the final step, and the
token ids of one step of such a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rmt_cli.samples import Sample

if TYPE_CHECKING:
    from rmt_cli.samples import SampleFactory


@dataclass(frozen=True)
class BatchPlan:
    """Right-aligned schedule of a batch: every sample's last segment falls on the final step.

    Samples are sorted by segment count, longest first, so that the samples active at a step are always a prefix
    of the batch: step t runs rows [0, active[t]) and a sample costs nothing before its first segment.
    """

    samples: tuple[Sample, ...]  # sorted, longest first
    order: np.ndarray  # order[j] = position in the caller's list of sorted row j
    counts: np.ndarray  # segments of each sorted row

    @classmethod
    def right_aligned(cls, samples: list[Sample]) -> "BatchPlan":
        order = np.argsort([-s.n_segments for s in samples], kind="stable")
        ordered = tuple(samples[i] for i in order)
        return cls(ordered, order, np.array([s.n_segments for s in ordered]))

    @property
    def n_steps(self) -> int:
        return int(self.counts[0])

    def active_rows(self, step: int) -> int:
        return int(np.sum(self.counts >= self.n_steps - step))

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def step_tokens(factory: SampleFactory, plan: BatchPlan, step: int) -> np.ndarray:
    """[active rows, content_length] token ids of one step of a right-aligned batch (vectorised gather)."""
    rows = plan.active_rows(step)
    samples = plan.samples[:rows]
    local = [s.n_segments - plan.n_steps + step for s in samples]
    starts = np.fromiter((s.noise_starts[i] for s, i in zip(samples, local, strict=True)), dtype=np.int64, count=rows)
    tokens = factory.corpus.tokens[starts[:, None] + factory._offsets[None, :]]
    for row, (sample, index) in enumerate(zip(samples, local, strict=True)):
        if index == sample.n_segments - 1 or index in sample.fact_segments:
            tokens[row] = factory.compose(sample, index, tokens[row])
    return tokens
