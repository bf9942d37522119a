"""BABILong's bAbI stories (task=babilong) from the Hugging Face hub."""

from __future__ import annotations

import re
from functools import cache

from rmt_cli.errors import RuntimeFailure
from rmt_cli.facts import Story

BABILONG = "RMT-team/babilong"


class BabilongUnavailable(RuntimeFailure):
    """BABILong's `length`/`split` could not be loaded from the hub (`reason`: the first line of the error)."""

    def __init__(self, length: str, split: str, reason: str):
        self.length, self.split, self.reason = length, split, reason
        super().__init__(f"cannot load BABILong ({BABILONG} {length}/{split}): {reason}; it needs the Hugging Face "
                         "hub once (then it is cached)")


@cache
def load_babilong(length: str, split: str) -> tuple[Story, ...]:
    """BABILong's stories of one task (split qa1..qa10) and length config, from the Hugging Face hub (cached).

    Each row's input becomes the facts, one per sentence; its question and target are the question and answer.
    """
    try:
        import datasets

        rows = datasets.load_dataset(BABILONG, length, split=split)
        stories = tuple(Story(facts=tuple(s for s in re.split(r"(?<=[.!?])\s+", row["input"].strip()) if s),
                              question=row["question"].strip(), answer=row["target"].strip(),
                              source=f"BABILong {length}/{split} row {index}") for index, row in enumerate(rows))
    except Exception as err:  # offline, unknown config or split, changed schema: all reported the same way
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise BabilongUnavailable(length, split, detail) from None
    if not stories:
        raise RuntimeFailure(f"BABILong {length}/{split} has no rows")
    return stories
