"""Finding runs under outputs/: the newest finished training run, for commands given no --checkpoint."""

from __future__ import annotations

from pathlib import Path

from rmt_cli import run_info
from rmt_cli.checkpoint import TRAINER, find_checkpoint, resume_points
from rmt_cli.errors import RmtError, UsageError


def finished_at(run_dir: Path) -> float | None:
    """When a training run finished its curriculum (a file time), or None if it has not.

    run_info.json says so; runs written before it existed tell through their newest resume checkpoint.
    """
    info = run_info.read(run_dir)
    if info is not None:
        return (run_dir / run_info.FILE).stat().st_mtime if info.get("finished") else None
    points = resume_points(run_dir / "checkpoints")
    if not points or not (points[0] / TRAINER).is_file():
        return None
    import torch

    try:  # mmap: only the flag is read, not the optimizer state
        state = torch.load(points[0] / TRAINER, weights_only=True, mmap=True)
    except Exception:  # a damaged checkpoint is no finished run
        return None
    return (points[0] / TRAINER).stat().st_mtime if state.get("finished") else None


def newest_finished_run(root: Path = Path("outputs")) -> Path:
    runs = []
    for checkpoints in Path(root).rglob("checkpoints"):
        when = finished_at(checkpoints.parent)
        if when is not None:
            try:
                find_checkpoint(checkpoints.parent)
            except RmtError:
                continue
            runs.append((when, checkpoints.parent))
    if not runs:
        raise UsageError(f"no finished training run under {root}/ to pick; pass --checkpoint RUN_DIR "
                         "(a run folder of `rmt train` or an `rmt export` folder)")
    return max(runs)[1]
