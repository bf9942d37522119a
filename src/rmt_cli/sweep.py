"""Sweeps (`rmt train -m ...`): a point that fails is recorded and the others still run; the failures are reported
once the sweep has ended, one line each, and decide the exit code.

Points may run in other processes (Hydra's submitit launchers), so they are recorded in a file of the sweep folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from rmt_cli.errors import RmtError
from rmt_cli.user_messages import user_message

FAILURES = ".failed-points.jsonl"


def record_failure(sweep_dir: Path, overrides: list[str], error: RmtError) -> None:
    line = json.dumps({"overrides": " ".join(overrides), "error": user_message(error), "exit_code": error.exit_code})
    with open(Path(sweep_dir) / FAILURES, "a") as file:  # one short line per append: safe from several processes
        file.write(line + "\n")


def report_failures(sweep_dir: Path | None) -> None:
    """One line per failed point on stderr, then exit with the highest of their exit codes (none failed: return)."""
    path = Path(sweep_dir or ".") / FAILURES
    if not path.is_file():
        return
    failures = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    os.unlink(path)
    for failure in failures:
        typer.secho(f"error: sweep point {failure['overrides'] or '(no overrides)'}: {failure['error']}",
                    fg=typer.colors.RED, err=True)
    if failures:
        raise SystemExit(max(failure["exit_code"] for failure in failures))
