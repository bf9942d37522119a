"""Where a training run stands: what a resume point stores besides the weights, the optimizer and the schedule.

`state_dict()` is the trainer.pt format that resume points have always had (checkpoint.py), so resume points of
earlier versions load too:
    stage, step, stage_done, finished    the last step taken; the stage is done once it has run its steps or
                                          reached `advance_at`; finished: the whole curriculum is
    best_accuracy                         the stage's best validation accuracy so far (-1: none yet)
    next_sample                           the data position: index of the next training sample of the global batch
    summary                               one row per stage done, for the final table and metrics.jsonl
    metrics_lines                         lines of metrics.jsonl written up to this state
    torch_rng, cuda_rng                   rank 0's random number generator states (cuda_rng only with CUDA)
    rank_rng                              data-parallel runs only: every rank's, in rank order
    spike_guard                           with trainer.skip_spikes, once it has seen a step: the stage's recent
                                          gradient norms and how many of its steps it skipped
    stage_steps                           with trainer.fit_time_limit, once it has cut the stage in progress: the
                                          steps that stage now ends at
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

RngState = dict[str, torch.Tensor | list[torch.Tensor]]


def current_rng() -> RngState:
    """This process's random number generator states."""
    state: RngState = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def set_rng(state: RngState) -> None:
    torch.set_rng_state(state["torch_rng"])  # type: ignore[arg-type]  # stored by current_rng: one tensor
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])  # type: ignore[arg-type]  # a list of tensors


@dataclass
class TrainState:
    """The run's progress; a fresh run stands before stage 1 (stage 0)."""

    stage: int = 0
    step: int = 0
    stage_done: bool = False
    finished: bool = False
    best_accuracy: float = -1.0
    next_sample: int = 0
    summary: list[dict] = field(default_factory=list)
    metrics_lines: int = 0
    rank_rng: list[RngState] = field(default_factory=list)  # every rank's, in rank order, as of the last save
    recent_grad_norms: list[float] = field(default_factory=list)  # trainer.skip_spikes: the stage's last norms
    skipped_steps: int = 0  # trainer.skip_spikes: the stage's steps skipped as gradient spikes
    stage_steps: int | None = None  # trainer.fit_time_limit: the steps the stage in progress was cut to

    def pending(self, stage_number: int) -> bool:
        """Whether stage `stage_number` still has steps to run (or its last validation to take)."""
        return stage_number > self.stage or (stage_number == self.stage and not self.stage_done)

    def inside(self, stage_number: int) -> bool:
        """Whether the run stopped partway through stage `stage_number`, so that it continues there."""
        return stage_number == self.stage and not self.stage_done and self.step > 0

    def begin_stage(self, stage_number: int) -> None:
        """Before its first step (a finished run may go on into stages added to its curriculum)."""
        self.stage, self.step, self.best_accuracy = stage_number, 0, -1.0
        self.stage_done = self.finished = False
        self.recent_grad_norms, self.skipped_steps, self.stage_steps = [], 0, None

    def end_stage(self, row: dict) -> None:
        """The stage is done; its `row` joins the summary."""
        self.stage_done = True
        self.summary.append(row)

    def finish(self, last_stage: int) -> None:
        """The curriculum is done, up to stage `last_stage`."""
        self.begin_stage(last_stage)
        self.stage_done = self.finished = True

    def rng_of(self, rank: int, world: int) -> RngState:
        """The RNG states rank `rank` of `world` continues from: its own, or rank 0's when the run was saved with
        another number of processes."""
        return self.rank_rng[rank] if world > 1 and len(self.rank_rng) == world else self.rank_rng[0]

    def state_dict(self) -> dict:
        state: dict = {"stage": self.stage, "step": self.step, "stage_done": self.stage_done, "finished": self.finished,
                 "best_accuracy": self.best_accuracy, "next_sample": self.next_sample, "summary": self.summary,
                 "metrics_lines": self.metrics_lines, **self.rank_rng[0]}
        if len(self.rank_rng) > 1:
            state["rank_rng"] = self.rank_rng
        if self.recent_grad_norms or self.skipped_steps:
            state["spike_guard"] = {"recent_grad_norms": self.recent_grad_norms, "skipped_steps": self.skipped_steps}
        if self.stage_steps is not None:
            state["stage_steps"] = self.stage_steps
        return state

    def load_state_dict(self, state: dict) -> None:
        """From `state_dict()`'s format; other keys (a resume point's optimizer and scheduler) are left alone."""
        self.stage, self.step, self.stage_done, self.finished = (state["stage"], state["step"], state["stage_done"],
                                                                 state["finished"])
        self.best_accuracy, self.next_sample = state["best_accuracy"], state["next_sample"]
        self.summary, self.metrics_lines = state["summary"], state["metrics_lines"]
        own = {key: state[key] for key in ("torch_rng", "cuda_rng") if key in state}
        self.rank_rng = state.get("rank_rng", [own])
        guard = state.get("spike_guard", {})
        self.recent_grad_norms = list(guard.get("recent_grad_norms", []))
        self.skipped_steps = guard.get("skipped_steps", 0)
        self.stage_steps = state.get("stage_steps")
