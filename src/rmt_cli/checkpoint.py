"""Checkpoints: weights as safetensors, metadata as JSON, trainer state through torch.load(weights_only=True).

Layout of a run folder:
    config.yaml                      resolved config of the run
    metrics.jsonl
    checkpoints/stage3-best/         model.safetensors + meta.json (the stage's best validation accuracy)
    checkpoints/last/                model.safetensors + meta.json + trainer.pt (optimizer, scheduler, RNG, position)
Each checkpoint folder is written under a temporary name and renamed into place, so a crash never leaves a
half-written checkpoint behind its final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rmt_cli.errors import RuntimeFailure

WEIGHTS, META, TRAINER = "model.safetensors", "meta.json", "trainer.pt"


def save_checkpoint(folder: Path, model: torch.nn.Module, meta: dict, trainer_state: dict | None = None) -> None:
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, staging / WEIGHTS)
    (staging / META).write_text(json.dumps(meta, indent=2))
    if trainer_state is not None:
        torch.save(trainer_state, staging / TRAINER)
    previous = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


def stage_number(path: Path) -> int:
    match = re.fullmatch(r"stage(\d+)-best", path.name)
    return int(match.group(1)) if match else -1


def find_checkpoint(path: Path) -> Path:
    """A checkpoint folder from a run folder (its last stage's best), a checkpoints/ folder, or itself."""
    path = Path(path)
    if not path.exists():
        raise RuntimeFailure(f"checkpoint path {path} does not exist; pass the run folder written by `rmt train`")
    if (path / WEIGHTS).is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    stages = sorted((p for p in folder.glob("stage*-best") if (p / WEIGHTS).is_file()), key=stage_number)
    if not stages:
        raise RuntimeFailure(f"{path} holds no checkpoint ({WEIGHTS} under checkpoints/stageN-best); "
                             "pass the run folder written by `rmt train`")
    return stages[-1]


def read_meta(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / META).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RuntimeFailure(f"checkpoint {folder} has no readable {META} ({error.__class__.__name__}); "
                             "it is not a checkpoint of `rmt train`") from None


def load_weights(folder: Path, model: torch.nn.Module) -> None:
    try:
        state = load_file(Path(folder) / WEIGHTS)
    except Exception as error:  # safetensors raises its own error types for truncated or foreign files
        raise RuntimeFailure(f"cannot read {Path(folder) / WEIGHTS}: {error}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeFailure(f"checkpoint {folder} does not fit this model "
                             f"(missing {len(missing)}, unexpected {len(unexpected)} tensors, e.g. "
                             f"{(missing + unexpected)[0]}); was it trained with another backbone?")


def load_trainer_state(folder: Path) -> dict:
    return torch.load(Path(folder) / TRAINER, weights_only=True)
