"""Where facts go in an input: the fewest segments a story needs, and segment choices that fit every fact's tokens
into its segment's room (facts in story order)."""

from __future__ import annotations

import numpy as np

UNFIT = 1 << 30  # segments "needed" by a story with a sentence longer than a segment


def minimum_segments(lengths: list[int], question: int, content: int) -> int:
    """The fewest segments of `content` tokens that hold facts of these lengths in order and the question last."""
    if max(lengths, default=0) > content or question > content:
        return UNFIT
    segments, load = 1, 0
    for length in lengths:
        if load + length > content:
            segments, load = segments + 1, 0
        load += length
    return segments + (load + question > content)


def pack(lengths: list[int], capacity: np.ndarray) -> np.ndarray:
    """Segment of each fact when facts fill segments in order from the first (next fit)."""
    segments, segment, load = np.zeros(len(lengths), dtype=np.int64), 0, 0
    for i, length in enumerate(lengths):
        if load + length > capacity[segment]:
            segment, load = segment + 1, 0
        segments[i], load = segment, load + length
    return segments


def fit(drawn: np.ndarray, lengths: list[int], capacity: np.ndarray) -> np.ndarray:
    """Drawn segments (non-decreasing) moved as little as it takes for every segment's facts to fit it: facts that
    overflow a segment move on to the next, then those pushed past the last come back toward the first."""
    segments = [int(s) for s in drawn]
    n = len(capacity)
    for order, step in ((range(len(lengths)), 1), (range(len(lengths) - 1, -1, -1), -1)):
        current, load = (0, 0) if step == 1 else (n - 1, 0)
        for i in order:
            target = max(segments[i], current) if step == 1 else min(segments[i], current)
            if target != current:
                current, load = target, 0
            while 0 <= current < n and load + lengths[i] > capacity[current]:
                current, load = current + step, 0
            segments[i], load = current, load + lengths[i]
    if min(segments) < 0:  # moving facts back and forth found no fit; the first-fit packing does
        return pack(lengths, capacity)
    return np.array(segments, dtype=np.int64)
