"""A stage's learning-rate schedule, and its cut to the time limit (`trainer.fit_time_limit`).

A run that a time limit stops mid-stage keeps the learning rate it had there: a linear schedule stopped at two
thirds of its steps is still at a third of its peak, where a detect stage's validation swings most. With
`trainer.fit_time_limit`, each validation of the last stage measures the stage's pace (seconds per step,
validations included) and, where the time left holds fewer steps than planned, ends the stage sooner: the schedule
is rebuilt over the new number of steps (warm-up unchanged) and continues from the step taken, so the learning
rate decays to the end of it before the limit. The first measurement counts the stage's start (its data built, the
first steps' allocations), so it is slower than the stage will be; later ones count only the steps since it, and
refit the stage either way, never past its planned steps nor once it has reached its end.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler
from transformers import get_scheduler


def stage_schedule(name: str, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                   taken: int = 0) -> LRScheduler:
    """transformers' schedule `name` with `warmup_steps` over `total_steps`, standing after `taken` steps: the
    learning rate it sets is the one of step `taken + 1` (a stage's scheduler steps once after each step)."""
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    if taken:
        scheduler.last_epoch = taken - 1
        scheduler.step()
    return scheduler


def steps_that_fit(step: int, planned: int, seconds_per_step: float, seconds_left: float, reserve: float) -> int:
    """The step a stage should end at, after step `step`: `planned`, or sooner where the time left (less
    `reserve`, kept for the stage's last validation) holds fewer steps at `seconds_per_step`; `step` itself when it
    holds none."""
    more = math.floor((seconds_left - reserve) / seconds_per_step) if seconds_per_step > 0 else planned
    return max(step, min(planned, step + max(0, more)))
