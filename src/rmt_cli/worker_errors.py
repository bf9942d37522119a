"""How the data-parallel workers that `trainer.devices=N` starts tell the launching process how they ended.

The launcher creates an empty folder and names it in the environment variable FOLDER_VARIABLE; torchrun passes
it on to every worker. A worker that ends on an error writes rank-RANK.json there (its one-line message and exit
code) at the moment it prints that line; one whose training returned writes finished-RANK. Once torchrun has
exited, the launcher reads the files and reports the first failure as its own. Processes not started that way
have no such variable and write nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from rmt_cli.atomic import atomic_file

FOLDER_VARIABLE = "RMT_WORKER_ERRORS"


@dataclass(frozen=True)
class WorkerError:
    rank: int
    message: str | None  # None: stopped by Ctrl-C before it had an error of its own to report
    exit_code: int
    time: float  # when it was written (time.time()), to tell the first failure from those it caused


def record(message: str | None, exit_code: int) -> None:
    """In a launched worker, leave this process's error for the launcher; elsewhere, do nothing."""
    folder = os.environ.get(FOLDER_VARIABLE)
    if not folder:
        return
    rank = int(os.environ.get("RANK", "0"))
    entry = {"rank": rank, "message": message, "exit_code": exit_code, "time": time.time()}
    try:  # the launcher never reads half a file
        with atomic_file(Path(folder) / f"rank-{rank}.json") as file:
            file.write(json.dumps(entry))
    except OSError:
        pass  # the launcher then reports torchrun's own account of the failure; the error line is printed anyway


def record_finished() -> None:
    """In a launched worker, tell the launcher that this rank's training returned (rank 0: with everything saved);
    elsewhere, do nothing."""
    folder = os.environ.get(FOLDER_VARIABLE)
    if folder:
        try:
            (Path(folder) / f"finished-{os.environ.get('RANK', '0')}").touch()
        except OSError:
            pass  # the launcher then takes a crash after this point for a failed run, as it would without the file


def finished_ranks(folder: str | Path) -> set[int]:
    """The ranks whose training returned."""
    return {int(path.name.removeprefix("finished-")) for path in Path(folder).glob("finished-*")}


def read(folder: str | Path) -> list[WorkerError]:
    """The errors the workers left in `folder`, the first one written first."""
    errors = []
    for path in Path(folder).glob("rank-*.json"):
        try:
            entry = json.loads(path.read_text())
            errors.append(WorkerError(int(entry["rank"]), entry["message"], int(entry["exit_code"]),
                                      float(entry["time"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a worker killed while writing: as if it had written nothing
    return sorted(errors, key=lambda error: (error.time, error.rank))
