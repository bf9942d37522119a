"""What a config key takes beyond its type: ranges and allowed values, as checks that raise one line naming the key,
the value and what it takes (UsageError, exit 2).

A check takes the key as the user would write it and the value as plain Python. It checks the type too, so that it
also words a value that OmegaConf refused (`trainer.lr=abc`). `setting(default, check)` declares a schema field
with its check.
"""

from __future__ import annotations

import math
import re
from dataclasses import field
from typing import Any, Callable, TypeGuard

from rmt_cli.errors import UsageError

Check = Callable[[str, Any], None]


def setting(default: Any, check: Check | None = None) -> Any:
    """A dataclass field with `default` (a list is copied for each instance) and the check of its values."""
    metadata = {"check": check} if check else {}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def shown(value) -> str:
    """A value as it would be written in an override (a float node's 2.0 as 2, as it was likely typed)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {shown(item)}" for key, item in value.items()) + "}"
    return str(value)


def alternatives(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def is_whole(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(minimum: int = 0, why: str = "") -> Check:
    def check(key, value):
        if not is_whole(value):
            raise UsageError(f"{key}={shown(value)} must be a whole number (at least {minimum})")
        if value < minimum:
            raise UsageError(f"{key}={shown(value)} must be at least {minimum}{why}")
    return check


def number(low: float, high: float = math.inf) -> Check:
    def check(key, value):
        if not is_number(value):
            raise UsageError(f"{key}={shown(value)} must be a finite number")
        if value < low or value > high:
            span = f"between {low:g} and {high:g}" if high < math.inf else f"at least {low:g}"
            raise UsageError(f"{key}={shown(value)} must be {span}")
    return check


def share_below_one(key, value) -> None:
    """0 (off) or a fraction below 1."""
    if not is_number(value) or not 0 <= value < 1:
        raise UsageError(f"{key}={shown(value)} must be a number from 0 up to (not including) 1")


def share(key, value) -> None:
    """A fraction strictly between 0 and 1."""
    if not is_number(value) or not 0 < value < 1:
        raise UsageError(f"{key}={shown(value)} must be a number strictly between 0 and 1")


def positive(key, value) -> None:
    if not is_number(value):
        raise UsageError(f"{key}={shown(value)} must be a finite number")
    if value <= 0:
        raise UsageError(f"{key}={shown(value)} must be positive")


def choice(*allowed: str) -> Check:
    def check(key, value):
        if value not in allowed:
            raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(allowed)}")
    return check


def optional(inner: Check) -> Check:
    def check(key, value):
        if value is not None:
            inner(key, value)
    return check


def text(key, value) -> None:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{key}={shown(value)} must be a non-empty text")


def flag(key, value) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{key}={shown(value)} must be true or false")


def texts(key, value) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise UsageError(f"{key}={shown(value)} must be a list of texts, e.g. {key}=[a,b]")


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device(key, value) -> None:
    if not isinstance(value, str) or not DEVICE.fullmatch(value):
        raise UsageError(f"{key}={shown(value)} is unknown; use auto, cpu, cuda or cuda:N")


# Schedulers that step on a validation metric; training steps its scheduler once per optimizer step.
STEPS_ON_A_METRIC = ("reduce_lr_on_plateau", "greedy")


def scheduler(key, value) -> None:
    from transformers import SchedulerType

    names = [kind.value for kind in SchedulerType if kind.value not in STEPS_ON_A_METRIC]
    if value not in names:
        raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(names)}")


def generator(key, value) -> None:
    from rmt_cli.stories import GENERATORS

    if value is not None and value not in GENERATORS:
        raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(GENERATORS)}")


def head(key, value) -> None:
    from rmt_cli.engine import HEADS

    if value not in HEADS:
        raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(HEADS)}")


def layout(key, value) -> None:
    from rmt_cli.engine import LAYOUTS

    if value not in LAYOUTS:
        raise UsageError(f"{key}={shown(value)} is unknown; use encoder (BERT family) or decoder "
                         "(GPT-2, OPT, Llama families)")


def stage_segments(key, value) -> None:
    """A stage's segment count, or the range [lo, hi] each sample's count is drawn from."""
    ok = is_whole(value) and value >= 1
    if isinstance(value, list) and len(value) == 2 and all(is_whole(count) for count in value):
        ok = 1 <= value[0] <= value[1]
    if not ok:
        raise UsageError(f"{key}={shown(value)} must be a count ≥ 1 or a range [lo, hi]")


def longest_input(key, value) -> None:
    """extrapolate's --max-segments."""
    if not is_whole(value) or value < 1:
        raise UsageError(f"--max-segments {shown(value)}: the longest input must be at least 1 segment")


def probed_input(key, value) -> None:
    """retention's --max-segments: the question is asked after a segment and read in the next, so at least 2."""
    if not is_whole(value) or value < 2:
        raise UsageError(f"--max-segments {shown(value)}: a traced input must be at least 2 segments (a fact read "
                         "before the question's segment)")


def lengths(key, value) -> None:
    """extrapolate's --segments: null, or a list of lengths."""
    if value is None:
        return
    if not isinstance(value, list) or not value:
        raise UsageError(f"{key}={shown(value)}: give at least one length, e.g. --segments 1,2,4,16")
    if not all(is_whole(length) for length in value):
        raise UsageError(f"{key}={shown(value)}: give whole numbers, e.g. --segments 1,2,4,16")
    if min(value) < 1:
        raise UsageError(f"{key}={shown(value)}: every length must be at least 1 segment")
