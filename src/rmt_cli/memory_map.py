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

Two variants (trainer.memory_map_target, trainer.memory_map_hidden). The map's entries each need a place and a
direction together, a conjunction a linear read of what the memory adds up cannot form; `ends` asks instead for one
place per memory, the north (or east) end of the line the facts read so far draw (one fact: its northern or eastern
place; qa4's two facts: the end of their three places). With the places the memory already keeps (which one the
facts share, results/cpu_checks/memory_probe), that end fixes every relation, and it is what a write asked for it
directly learns in 50 steps. Measured: asked for the end, the memory carries the direction where asked for the
whole map it did not (results/paper/direction_sweep, mapped_first); paper_minilm_reasoning uses it.
`memory_map_hidden` > 0 reads the map through a hidden layer of that width (GELU).

A third target, `answer`, is for tasks of one-fact stories (qa1: memorize, detect), whose fact alone gives the
answer: from the fact's segment on, the memory is asked for it after every segment, so that keeping it is trained
at every step of a long input and not only through the question's read at its end.
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
RISING = ("north", "east")  # the directions whose end `ends` asks for
UNSET = -100  # an entry no fact has set: not asked (cross-entropy's ignore_index)
KEYS = len(LOCATIONS) * len(DIRECTIONS)  # one entry per (place, direction)
RELATION = re.compile(rf"the ({'|'.join(LOCATIONS)}) is ({'|'.join(DIRECTIONS)}) of the ({'|'.join(LOCATIONS)})",
                      re.IGNORECASE)


def key(place: str, direction: str) -> int:
    return LOCATIONS.index(place) * len(DIRECTIONS) + DIRECTIONS.index(direction)


def relation_entries(fact: str) -> list[tuple[int, int]]:
    """The (key, place) entries one qa4 fact sets: "The A is d of the B." puts A at (B, d) and B at (A, opposite d).
    A sentence that relates no places sets none."""
    found = relation(fact)
    if found is None:
        return []
    a, direction, b = found
    return [(key(b, direction), LOCATIONS.index(a)), (key(a, OPPOSITE[direction]), LOCATIONS.index(b))]


def relation(fact: str) -> tuple[str, str, str] | None:
    """("a", "direction", "b") of "The A is direction of the B.", None for a sentence that relates no places."""
    found = RELATION.search(fact)
    if found is None:
        return None
    a, direction, b = found.groups()
    return a.lower(), direction.lower(), b.lower()


def north_east_end(relations: Sequence[tuple[str, str, str]]) -> int:
    """The index of the place furthest north (or east) on the line that `relations` draw: each "a is d of b" puts a
    one step from b, towards d. Relations that share no place are placed as they come (qa4's always share one)."""
    position: dict[str, int] = {}
    for a, direction, b in relations:
        step = 1 if direction in RISING else -1
        if b in position:
            position.setdefault(a, position[b] + step)
        elif a in position:
            position[b] = position[a] - step
        else:
            position[b], position[a] = 0, step
    return LOCATIONS.index(max(position, key=lambda place: position[place]))


def _facts_read(sample: Sample) -> list[tuple[int, str]]:
    """(segment, sentence) of each of the sample's story facts, in reading order; none without a story."""
    story = sample.story
    if story is None:
        return []
    return [(fact.segment, story.facts[fact.story_index]) for fact in sorted(sample.facts, key=lambda f: f.segment)]


def _relations(sample: Sample, targets: np.ndarray) -> None:
    """Every (place, direction) entry the facts read so far set."""
    for segment, text in _facts_read(sample):
        for entry, place in relation_entries(text):
            targets[segment:, entry] = place


def _ends(sample: Sample, targets: np.ndarray) -> None:
    """The north/east end of the line the facts read so far draw."""
    read: list[tuple[str, str, str]] = []
    for segment, text in _facts_read(sample):
        if (found := relation(text)) is not None:
            read.append(found)
            targets[segment:, 0] = north_east_end(read)


def _answer(sample: Sample, targets: np.ndarray) -> None:
    """The sample's label from the segment of its last fact on."""
    targets[max(fact.segment for fact in sample.facts):, 0] = sample.label


# target -> (entries asked per memory, what fills them); a sample without facts (or a qa4 target without a story)
# asks nothing
TARGETS = {"relations": (KEYS, _relations), "ends": (1, _ends), "answer": (1, _answer)}


def map_after_each_segment(sample: Sample, target: str = "relations") -> np.ndarray:
    """[n_segments, entries] what `target` asks of the memory by the end of each segment of `sample` (UNSET where
    no fact has set an entry yet): `relations`, the map of the facts read so far ([n_segments, KEYS]); `ends`, the
    north/east end of their line; `answer`, the sample's label from its last fact's segment on ([n_segments, 1])."""
    entries, fill = TARGETS[target]
    targets = np.full((sample.n_segments, entries), UNSET, dtype=np.int64)
    if sample.facts:
        fill(sample, targets)
    return targets


class MemoryMap(nn.Module):
    """The layer that reads a map (or, with target `ends`, one place; `answer`, one of the task's `labels`) from the
    memory vectors [rows, memory_size, hidden] (flattened): linear, or through a hidden layer of width
    `read_hidden` (> 0)."""

    def __init__(self, memory_size: int, hidden: int, target: str = "relations", read_hidden: int = 0,
                 labels: int = len(LOCATIONS)):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"memory map target {target!r}: one of {', '.join(TARGETS)}")
        self.memory_size, self.target = memory_size, target
        self.classes = labels if target == "answer" else len(LOCATIONS)
        outputs = TARGETS[target][0] * self.classes
        width = memory_size * hidden
        self.read = (nn.Linear(width, outputs) if read_hidden == 0 else
                     nn.Sequential(nn.Linear(width, read_hidden), nn.GELU(), nn.Linear(read_hidden, outputs)))

    def forward(self, memory: Tensor) -> Tensor:
        """[rows, entries, classes] logits from a memory (entries: KEYS, or 1 for `ends` and `answer`); only its
        first memory_size vectors are read (a memory with more rows, as memory.associative's state, keeps its
        vectors first)."""
        return self.read(memory[:, :self.memory_size].float().flatten(1)).view(len(memory), -1, self.classes)

    def loss(self, written: Sequence[tuple[int, Tensor]], plan: BatchPlan) -> Tensor:
        """The mean cross-entropy over the set entries of every (step, row) of the memories a right-aligned batch
        wrote (`written`: the engine's memory_hook calls, in order); 0 (with gradients) where none is set yet."""
        if not written:
            raise ValueError("no memory was written with autograd: nothing to read a map from")
        maps = [map_after_each_segment(sample, self.target) for sample in plan.samples]
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
