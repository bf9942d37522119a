"""Noise-primed rows (a curriculum stage's `noise_primed` and `primed_segments`): a share of the batch's rows start
each step from a memory that has read nothing but noise, often for hundreds of segments, as a memory has where a fact
arrives deep into a long test input.

`rmt retention` shows how detect fails at lengths far beyond training: a fact taken in is held, but after long noise
the memory no longer takes one in (answers fall with the segments of noise before the fact, not with those after
it). Training inputs of tens of segments never show the memory such a state. Here a pool of memories, one per primed
row, reads `primed_segments` segments of training noise every step (without gradient: a forward's cost) and each
restarts from the initial memory with probability 1 / RESTART_STEPS a step, so the noise a primed row has read before
its input is spread from none to several hundred segments (geometrically, about RESTART_STEPS x primed_segments on
average once the stage is under way). With `primed_segments: [lo, hi]` the segments read a step grow linearly from
lo at the stage's first step to hi at its last, so the noise behind a primed row, and with it how hard the row is,
grows through the stage instead of nearing its full depth after the stage's first RESTART_STEPS or so. Unlike
`carry_memory`, no primed memory holds an earlier fact to be overwritten; unlike chains, every primed row is scored
at every step.

Which rows are primed follows from (seed, stage, rank); the noise read and the restarts from (seed, stage, rank,
step). The pool is not saved: after a resume it starts again from the initial memory.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np
import torch

from rmt_cli.inference import to_device
from rmt_cli.samples import PRIMED_NOISE_CODE, SampleFactory

RESTART_STEPS = 64  # a pooled memory restarts with probability 1/RESTART_STEPS a step


class PrimedPool:
    """The pool of one stage and rank: which rows of its batches are primed, and their memories."""

    def __init__(self, seed: int, stage: int, rank: int, rows: int, share: float, segments: tuple[int, int],
                 steps: int):
        self.seed, self.stage, self.rank, self.segments, self.steps = seed, stage, rank, segments, steps
        order = np.random.default_rng([seed, PRIMED_NOISE_CODE, stage, rank]).permutation(rows)
        self.rows = order < round(share * rows)  # [rows] bool: the primed rows, the same all stage
        self.memory: torch.Tensor | None = None  # [primed rows, m, hidden], detached

    def carried(self, model, data: SampleFactory, step: int, device: torch.device,
                autocast: AbstractContextManager) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(primed rows, memory) for the engine's `carried`: the pool after this step's restarts and noise, in the
        primed rows of a [rows, m, hidden] memory. None when the stage primes no row."""
        primed = int(self.rows.sum())
        if not primed:
            return None
        rng = np.random.default_rng([self.seed, PRIMED_NOISE_CODE, self.stage, self.rank, step])
        initial = model.start_memory(primed).detach()
        memory = initial.clone() if self.memory is None else self.memory
        restart = torch.from_numpy(rng.random(primed) < 1 / RESTART_STEPS).to(device)
        memory = torch.where(restart[:, None, None], initial.to(memory.dtype), memory)
        with torch.no_grad(), autocast:
            for tokens in data.noise_segments(rng, primed, self.segments_at(step)):
                memory, _, _ = model.read_segment(memory, to_device(tokens, device))
        self.memory = memory.detach()
        full = torch.zeros(len(self.rows), *memory.shape[1:], dtype=memory.dtype, device=device)
        rows = torch.from_numpy(self.rows).to(device)
        full[rows] = self.memory
        return rows, full

    def segments_at(self, step: int) -> int:
        """Noise segments each pooled memory reads at the stage's 1-based `step`: lo, growing linearly to hi at the
        stage's last step."""
        lo, hi = self.segments
        return lo + (hi - lo) * (step - 1) // max(self.steps - 1, 1)
