"""Which segments of a sample matter: those that hold facts, the segment of each role (write, keep, read), and
those that moved the memory most (the L2 distance between consecutive memory states over the norm of the earlier
one)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from rmt_cli.samples import Sample

ROLES = ("write", "keep", "read")


def fact_segments(sample: Sample) -> list[int]:
    """Segments of a sample that hold at least one fact, in order."""
    return sorted({int(f.segment) for f in sample.facts})


def pick_roles(sample: Sample) -> dict[str, int | None]:
    """Segment of each role: write = first fact segment (before the last, if possible); keep = a fact-free
    segment before the last, after the write segment if possible; read = the last segment."""
    last = sample.n_segments - 1
    facts = fact_segments(sample)
    before_last = [s for s in facts if s != last]
    write = next(iter(before_last or facts), None)
    free = [s for s in range(last) if s not in facts]
    after = [s for s in free if write is not None and s > write]
    keep = next(iter(after or free), None)
    return {"write": write, "keep": keep, "read": last}


def memory_change(memories: Sequence[np.ndarray]) -> list[float]:
    """||M_t+1 - M_t|| / ||M_t|| for consecutive memory states (Frobenius norms): one value per segment."""
    changes = []
    for before, after in pairwise(memories):
        before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
        norm = float(np.linalg.norm(before))
        changes.append(float(np.linalg.norm(after - before) / max(norm, 1e-12)))
    return changes


def top_segments(changes: Sequence[float], k: int, start: int = 0) -> list[int]:
    """The k segments from `start` on that changed memory most, largest first."""
    order = np.argsort(-np.asarray(changes[start:], dtype=np.float64), kind="stable")[:k]
    return [int(i) + start for i in order]


def ranked_segments(changes: Sequence[float], facts: Sequence[int]) -> tuple[list[int], int]:
    """The segments that changed memory most, as many as the fact segments ranked (at least one), and that count.

    Segment 0 is left out when there are others: it replaces the learned initial memory (at the scale of token
    embeddings) by encoder outputs, a large change whatever it reads.
    """
    start = 1 if len(changes) > 1 else 0
    ranked_facts = sum(s >= start for s in facts)
    return top_segments(changes, max(ranked_facts, 1), start), ranked_facts
