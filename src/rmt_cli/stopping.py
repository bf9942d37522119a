"""Why a training run stops before its curriculum ends: a signal, or its time limit.

Neither stops it at once: the trainer asks after every step, saves a resume point, and then stops, so that the same
command continues exactly where it stopped.
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any, Callable

from rmt_cli import distributed

# Ctrl-C, SIGTERM, and SIGUSR2: Slurm's warning before a time limit or preemption.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class StopSignals:
    """While inside `with`, a stop signal only sets `received`; on leaving, the handlers installed before are back.

    A second signal interrupts at once (KeyboardInterrupt), except in a data-parallel worker (`abort_on_second`
    False): torchrun follows a Ctrl-C with its own SIGTERM, and the workers must still save.
    """

    def __init__(self, note: Callable[[str], None], abort_on_second: bool = True):
        self.note, self.abort_on_second = note, abort_on_second
        self.received: int | None = None  # the signal that asked this process to stop, once one has
        self.previous: dict[int, Any] = {}  # the handlers installed before ours

    def __enter__(self) -> StopSignals:
        self.previous = {sig: signal.signal(sig, self.request_stop) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            if self.abort_on_second:
                raise KeyboardInterrupt
            return
        self.received = signum
        self.note(f"{signal.Signals(signum).name}: stopping after this step (signal again to abort)")

    def pass_on(self) -> None:
        """After the stop was saved, hand this process's own signal (if it received one; another rank's may have
        stopped it) to the handler installed before ours (under submitit: requeue the job)."""
        if self.received is not None:
            distributed.pass_on(self.received, self.previous[self.received])


class Deadline:
    """`trainer.time_limit_minutes` from now (None: no limit)."""

    def __init__(self, minutes: float | None):
        self.minutes = minutes
        self.at = None if minutes is None else time.perf_counter() + 60 * minutes

    def passed(self) -> bool:
        return self.at is not None and time.perf_counter() > self.at

    def seconds_left(self) -> float | None:
        return None if self.at is None else self.at - time.perf_counter()
