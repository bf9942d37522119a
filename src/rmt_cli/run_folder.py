"""Run folders: one per run (never shared by two runs started together), locked while a run writes to it, and
removed again when a command fails before writing anything of its own."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from rmt_cli.errors import UsageError

LOCK_FILE = ".lock"
# A run started by a process that holds the lock (data-parallel workers under the `rmt train` that started them)
# finds the lock's path here and does not take it again.
INHERITED_LOCK = "RMT_RUN_LOCK"
# What Hydra and logging put into a run folder before a command writes anything of its own.
HYDRA_ENTRIES = {".hydra", LOCK_FILE}

_held: dict[Path, int] = {}  # lock file → descriptor, for the locks this process holds


def new_run_dir(proposed: Path) -> Path:
    """Create `proposed`, or `proposed-2`, `-3`, ... when a run started in the same second has taken it."""
    proposed = Path(proposed)
    proposed.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = proposed, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            number += 1
            candidate = proposed.with_name(f"{proposed.name}-{number}")


@contextmanager
def locked(run_dir: Path, note=print):
    """Hold the run folder's lock while the block runs. A lock held by a live process is one line (exit 2); the
    lock of a process that died is taken over (the kernel drops it with the process, on this host or over NFS)."""
    path = (Path(run_dir) / LOCK_FILE).resolve()
    if path in _held or os.environ.get(INHERITED_LOCK) == str(path):
        yield
        return
    descriptor = lock_file(path, run_dir)
    previous = os.read(descriptor, 200).decode(errors="replace").strip()
    if previous:
        note(f"took over the lock of {previous} on {run_dir}, which has ended")
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
    _held[path] = descriptor
    os.environ[INHERITED_LOCK] = str(path)
    try:
        yield
    finally:
        del _held[path]
        if os.environ.get(INHERITED_LOCK) == str(path):
            del os.environ[INHERITED_LOCK]
        path.unlink(missing_ok=True)  # before the lock drops: whoever opens the path next locks a new file
        os.close(descriptor)


def lock_file(path: Path, run_dir: Path) -> int:
    """An open descriptor of `path`, exclusively locked, that is still the file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 200).decode(errors="replace").strip() or "another process"
            os.close(descriptor)
            raise UsageError(f"run folder {run_dir} is in use by {holder}; wait for that run to end, or choose "
                             "another folder with hydra.run.dir=DIR") from None
        try:
            if os.stat(path).st_ino == os.fstat(descriptor).st_ino:
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)  # its holder unlinked it while releasing: lock the new file


def snapshot(folder: Path) -> set[str] | None:
    """The entries of `folder` now, or None when it does not exist."""
    folder = Path(folder)
    return set(os.listdir(folder)) if folder.is_dir() else None


def remove_if_unused(folder: Path, before: set[str] | None) -> None:
    """After a failed command: remove what Hydra and logging added to `folder` when the command wrote nothing else,
    and the folder itself when the command created it."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    added = set(os.listdir(folder)) - (before or set())
    if any(name not in HYDRA_ENTRIES and not name.endswith(".log") for name in added):
        return
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in added:
        target = folder / name
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
