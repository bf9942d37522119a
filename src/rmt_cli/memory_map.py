"""trainer.memory_map: a training objective that asks the memory, after every segment, for the map its facts draw.

Reasoning's memory, trained on its questions alone, keeps which places a story names and not which way they are
related: questions that need the direction stay a coin toss through the memory, while a linear probe trained
directly on what one segment writes learns the direction in a few dozen steps (results/cpu_checks/memory_probe).
The question's loss reaches the write only through the next segment's read, which has nothing to read until the
write keeps the direction. This objective asks the write directly: after each segment, a linear layer reads the
memory vectors and names, for every place and direction that the facts read so far relate, the place they put
there ("The bedroom is west of the kitchen." sets (kitchen, west) = bedroom and (bedroom, east) = kitchen). Every
question of the task is one entry of that map, so the objective asks nothing the questions do not; it asks all of
them, at every segment. The layer is a training aid, not part of the model that is saved and tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rmt_cli.batches import BatchPlan
from rmt_cli.facts import LOCATIONS, OPPOSITE
from rmt_cli.samples import Sample

DIRECTIONS = ("north", "south", "east", "west")
UNSET = -100  # an entry no fact has set: not asked (cross-entropy's ignore_index)
KEYS = len(LOCATIONS) * len(DIRECTIONS)  # one entry per (place, direction)
RELATION = re.compile(rf"the ({'|'.join(LOCATIONS)}) is ({'|'.join(DIRECTIONS)}) of the ({'|'.join(LOCATIONS)})",
                      re.IGNORECASE)


def key(place: str, direction: str) -> int:
    return LOCATIONS.index(place) * len(DIRECTIONS) + DIRECTIONS.index(direction)


def relation_entries(fact: str) -> list[tuple[int, int]]:
    """The (key, place) entries one qa4 fact sets: "The A is d of the B." puts A at (B, d) and B at (A, opposite d).
    A sentence that relates no places sets none."""
    found = RELATION.search(fact)
    if found is None:
        return []
    a, direction, b = (group.lower() for group in found.groups())
    return [(key(b, direction), LOCATIONS.index(a)), (key(a, OPPOSITE[direction]), LOCATIONS.index(b))]


def map_after_each_segment(sample: Sample) -> np.ndarray:
    """[n_segments, KEYS] the map of the facts read by the end of each segment of `sample` (UNSET where no fact
    has set an entry yet)."""
    targets = np.full((sample.n_segments, KEYS), UNSET, dtype=np.int64)
    if sample.story is None:
        return targets
    for fact in sorted(sample.facts, key=lambda f: f.segment):
        for entry, place in relation_entries(sample.story.facts[fact.story_index]):
            targets[fact.segment:, entry] = place
    return targets


class MemoryMap(nn.Module):
    """The linear layer that reads a map from the memory vectors [rows, memory_size, hidden] (flattened)."""

    def __init__(self, memory_size: int, hidden: int):
        super().__init__()
        self.memory_size = memory_size
        self.read = nn.Linear(memory_size * hidden, KEYS * len(LOCATIONS))

    def forward(self, memory: Tensor) -> Tensor:
        """[rows, KEYS, places] logits from a memory; only its first memory_size vectors are read (a memory
        with more rows, as memory.associative's state, keeps its vectors first)."""
        return self.read(memory[:, :self.memory_size].float().flatten(1)).view(len(memory), KEYS, -1)

    def loss(self, written: Sequence[tuple[int, Tensor]], plan: BatchPlan) -> Tensor:
        """The mean cross-entropy over the set entries of every (step, row) of the memories a right-aligned batch
        wrote (`written`: the engine's memory_hook calls, in order); 0 (with gradients) where none is set yet."""
        if not written:
            raise ValueError("no memory was written with autograd: nothing to read a map from")
        maps = [map_after_each_segment(sample) for sample in plan.samples]
        logits, targets = [], []
        for step, memory in written:
            rows = memory.shape[0]
            local = plan.counts[:rows] - plan.n_steps + step  # each row's own segment index at this step
            targets.append(np.stack([maps[row][local[row]] for row in range(rows)]))
            logits.append(self(memory))
        target = torch.from_numpy(np.concatenate(targets)).to(logits[0].device).flatten()
        logits_flat = torch.cat(logits).flatten(0, 1)
        if not (target != UNSET).any():
            return logits_flat.sum() * 0.0
        return F.cross_entropy(logits_flat, target, ignore_index=UNSET)
