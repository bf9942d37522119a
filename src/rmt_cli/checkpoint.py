"""Checkpoints: weights as safetensors, metadata as JSON, trainer state through torch.load(weights_only=True).

Layout of a run folder:
    config.yaml                      resolved config of the run
    metrics.jsonl
    checkpoints/stage3-best/         model.safetensors + meta.json (the stage's best validation accuracy)
    checkpoints/last-000001234/      model.safetensors + meta.json + trainer.pt (optimizer, scheduler, RNG, position);
                                     the newest `trainer.keep_last` of them are kept, numbered by data position
Each checkpoint folder is written under a temporary name and renamed into place, so a crash never leaves a
half-written checkpoint behind its final name; its manifest.json holds the SHA-256 of every file, so a checkpoint
damaged later (truncated, edited, disk error) is detected and the previous one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from rmt_cli.errors import RuntimeFailure, UsageError

WEIGHTS, META, TRAINER, MANIFEST = "model.safetensors", "meta.json", "trainer.pt", "manifest.json"
RESUME_PREFIX = "last-"


class CheckpointNotWritten(RuntimeFailure):
    """Writing checkpoint `folder` failed (`reason`: the system's or the library's one-line account, e.g. a full
    disk); nothing was left under its name."""

    def __init__(self, folder: Path, reason: str):
        self.folder, self.reason = folder, reason
        super().__init__(f"cannot write checkpoint {folder} ({reason})")


class CheckpointNotFound(RuntimeFailure):
    """`path` does not exist, or holds no checkpoint (`exists` tells which)."""

    def __init__(self, path: Path, exists: bool):
        self.path, self.exists = path, exists
        super().__init__(f"{path} holds no checkpoint ({WEIGHTS} under checkpoints/stageN-best)" if exists else
                         f"checkpoint path {path} does not exist")


class NotACheckpoint(UsageError):
    """Checkpoint `folder`'s meta.json is unreadable (`unreadable`: the error's type name) or lacks the entries in
    `missing`."""

    def __init__(self, folder: Path, missing: tuple[str, ...] = (), unreadable: str | None = None):
        self.folder, self.missing, self.unreadable = folder, missing, unreadable
        super().__init__(f"checkpoint {folder} has no readable {META} ({unreadable})" if unreadable else
                         f"checkpoint {folder}: {META} lacks {', '.join(missing)}")


class CheckpointDoesNotFit(UsageError):
    """Checkpoint `folder` stores `tensor` in the shape `stored`, the model has it in `expected`: the model was built
    with other settings."""

    def __init__(self, folder: Path, tensor: str, stored: list[int], expected: list[int]):
        self.folder, self.tensor, self.stored, self.expected = folder, tensor, stored, expected
        super().__init__(f"checkpoint {folder} does not fit this model: {tensor} is {stored} there and {expected} "
                         "here")


def save_checkpoint(folder: Path, model: torch.nn.Module, meta: dict, trainer_state: dict | None = None) -> None:
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        save_model(model, str(staging / WEIGHTS))  # tied weights (a decoder's LM head and embeddings) stored once
        (staging / META).write_text(json.dumps(meta, indent=2))
        if trainer_state is not None:
            torch.save(trainer_state, staging / TRAINER)
        checksums = {p.name: sha256(p) for p in sorted(staging.iterdir())}
        (staging / MANIFEST).write_text(json.dumps(checksums, indent=2))
        for path in staging.iterdir():  # safetensors writes its file readable by its owner alone
            path.chmod(FILE_MODE)
    except Exception as error:  # torch and safetensors report a full disk as their own error types
        shutil.rmtree(staging, ignore_errors=True)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).strip()
        reason = reason.splitlines()[0] if reason else type(error).__name__
        raise CheckpointNotWritten(folder, reason) from None
    previous = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


def tidy(checkpoints: Path) -> None:
    """Undo what a run stopped in the middle of save_checkpoint left: a half-written `.tmp` folder is removed; an
    `.old` folder is the checkpoint itself when the new one had not been renamed into place yet."""
    for leftover in Path(checkpoints).glob("*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    for previous in Path(checkpoints).glob("*.old"):
        folder = previous.with_suffix("")
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(previous, folder)


def default_file_mode() -> int:
    """rw for everyone the umask lets read and write (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = default_file_mode()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damage(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder according to its manifest, or None when every file checks out."""
    folder = Path(folder)
    try:
        checksums = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return f"no readable {MANIFEST}"
    if not isinstance(checksums, dict) or not {WEIGHTS, META} <= set(checksums):
        return f"{MANIFEST} does not list {WEIGHTS} and {META}"
    for name, expected in checksums.items():
        if not (folder / name).is_file():
            return f"{name} is missing"
        if sha256(folder / name) != expected:
            return f"{name} does not match its checksum"
    return None


def resume_folder(checkpoints: Path, position: int) -> Path:
    """Where the resume checkpoint at data position `position` lives."""
    return Path(checkpoints) / f"{RESUME_PREFIX}{position:09d}"


def resume_points(checkpoints: Path) -> list[Path]:
    """Resume checkpoints, newest first."""
    folders = [p for p in Path(checkpoints).glob(f"{RESUME_PREFIX}*") if p.name[len(RESUME_PREFIX):].isdigit()]
    return sorted(folders, reverse=True)


def latest_resume_point(checkpoints: Path, warn) -> Path | None:
    """The newest resume checkpoint that passes its manifest; damaged ones are reported through `warn`."""
    for folder in resume_points(checkpoints):
        problem = damage(folder)
        if problem is None:
            return folder
        warn(f"checkpoint {folder} is damaged ({problem}); using the one before it")
    return None


def stage_number(path: Path) -> int:
    match = re.fullmatch(r"stage(\d+)-best", path.name)
    return int(match.group(1)) if match else -1


def find_checkpoint(path: Path) -> Path:
    """A checkpoint folder from a run folder (its last stage's best), a checkpoints/ folder, or itself."""
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFound(path, exists=False)
    if (path / WEIGHTS).is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    stages = sorted((p for p in folder.glob("stage*-best") if (p / WEIGHTS).is_file()), key=stage_number)
    if not stages:
        raise CheckpointNotFound(path, exists=True)
    return stages[-1]


def verify(folder: Path) -> None:
    """Every file of the checkpoint matches its manifest, or one line saying which does not."""
    problem = damage(folder)
    if problem is not None:
        raise RuntimeFailure(f"checkpoint {folder} is damaged ({problem}); use another checkpoint "
                             "(an earlier stageN-best) or train again")


# What every command that reads a checkpoint needs from its meta.json.
META_KEYS = {"config": dict, "max_segments": int, "labels": list}
# The config nodes a checkpoint's run decides: its meta.json's config holds each of them, and the commands that read
# a trained run (and `rmt export`) take them from there.
RUN_NODES = ("backbone", "task", "noise", "memory", "segment")


def read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((Path(folder) / META).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NotACheckpoint(folder, unreadable=error.__class__.__name__) from None
    missing = [key for key, kind in META_KEYS.items() if not isinstance(meta, dict) or
               not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool)]
    if not missing:
        missing = [f"config.{node}" for node in RUN_NODES if not isinstance(meta["config"].get(node), dict)]
    if missing:
        raise NotACheckpoint(folder, missing=tuple(missing))
    return meta


def open_checkpoint(path: Path) -> tuple[Path, dict]:
    """The checkpoint folder for `path` (see find_checkpoint), checked against its manifest, and its metadata."""
    folder = find_checkpoint(path)
    verify(folder)
    return folder, read_meta(folder)


def load_weights(folder: Path, model: torch.nn.Module, verified: bool = False, fresh: tuple[str, ...] = ()) -> None:
    """Load a checkpoint's weights into `model`; unless `verified`, its manifest is checked first. Tensors of the
    model whose names start with one of `fresh` may be absent from the checkpoint: they keep their values."""
    if not verified:
        verify(folder)
    check_shapes(folder, model)
    try:
        missing, unexpected = load_model(model, Path(folder) / WEIGHTS, strict=False)
    except Exception as error:  # safetensors raises its own error types for truncated or foreign files
        raise RuntimeFailure(f"cannot read {Path(folder) / WEIGHTS}: {' '.join(str(error).split())}") from None
    missing = sorted(name for name in missing if not name.startswith(fresh))
    unexpected = sorted(unexpected)
    if missing or unexpected:
        raise RuntimeFailure(f"checkpoint {folder} does not fit this model "
                             f"(missing {len(missing)}, unexpected {len(unexpected)} tensors, e.g. "
                             f"{(missing + unexpected)[0]}); was it trained with another backbone?")


def check_shapes(folder: Path, model: torch.nn.Module) -> None:
    """A tensor the checkpoint stores in another shape than this model's: the model was built differently."""
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    try:
        with safe_open(str(Path(folder) / WEIGHTS), framework="pt") as weights:
            stored = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except Exception as error:  # safetensors raises its own error types for truncated or foreign files
        raise RuntimeFailure(f"cannot read {Path(folder) / WEIGHTS}: {' '.join(str(error).split())}") from None
    for name, shape in stored.items():
        if name in expected and expected[name] != shape:
            raise CheckpointDoesNotFit(folder, name, list(shape), list(expected[name]))


def load_trainer_state(folder: Path) -> dict:
    return torch.load(Path(folder) / TRAINER, weights_only=True)
