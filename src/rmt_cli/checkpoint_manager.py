"""The checkpoints/ folder of one training run: each stage's best weights and the newest resume points.

The layout and the file format are checkpoint.py's. Only the writer process (rank 0) writes or deletes; every
process reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import torch

from rmt_cli import distributed
from rmt_cli.checkpoint import (latest_resume_point, load_trainer_state, load_weights, resume_folder, resume_points,
                                save_checkpoint, tidy)


class CheckpointManager:
    """`stageN-best` (the stage's best validation weights) and `last-POSITION` resume points, of which the newest
    `keep_last` are kept."""

    def __init__(self, folder: Path, keep_last: int, writer: bool = True):
        self.folder, self.keep_last, self.writer = Path(folder), keep_last, writer

    def best_folder(self, stage_number: int) -> Path:
        return self.folder / f"stage{stage_number}-best"

    def save_best(self, stage_number: int, model: torch.nn.Module, meta: dict) -> None:
        if self.writer:
            save_checkpoint(self.best_folder(stage_number), model, meta)

    def load_best(self, stage_number: int, model: torch.nn.Module) -> None:
        """The stage's best weights into `model`, once the writer has saved them."""
        distributed.barrier()
        load_weights(self.best_folder(stage_number), model)

    def drop_bests(self) -> None:
        """Remove every stage's best: a fresh start must not take up what a run killed before its first resume
        point left behind."""
        if self.writer:
            for folder in self.folder.glob("stage*-best"):
                shutil.rmtree(folder)

    def save_resume_point(self, position: int, model: torch.nn.Module, meta: dict, trainer_state: dict) -> Path:
        """Write `last-POSITION` and delete all but the newest `keep_last` resume points; where it lies."""
        folder = resume_folder(self.folder, position)
        if self.writer:
            save_checkpoint(folder, model, meta, trainer_state)
            for old in self.resume_points()[self.keep_last:]:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    def resume_points(self) -> list[Path]:
        """The resume points on disk, newest first."""
        return resume_points(self.folder)

    def newest_resume_point(self, warn: Callable[[str], None]) -> Path | None:
        """The newest sound resume point, once the writer has cleaned up after a save that was cut short; damaged
        ones are reported through `warn` and passed over."""
        if self.writer:
            tidy(self.folder)
        distributed.barrier()
        return latest_resume_point(self.folder, warn)

    @staticmethod
    def load_resume_point(folder: Path, model: torch.nn.Module) -> dict:
        """Its weights into `model` (newest_resume_point checked them); its trainer state."""
        state = load_trainer_state(folder)
        load_weights(folder, model, verified=True)
        return state
