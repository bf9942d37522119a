"""What a run tells: `metrics.jsonl` lines, a live progress bar on a terminal (plain lines elsewhere), a summary."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

log = logging.getLogger("rmt")


def read_lines(path: Path) -> list[dict]:
    """The lines of a metrics.jsonl (none if there is no such file). A last line that does not parse is one still
    being written by a running run, and is left out; any other raises ValueError."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise
    return rows


def readable_lines(path: Path) -> list[dict]:
    """read_lines, or none at all when a line before the last is damaged: what reads a run's progress says nothing
    rather than something wrong."""
    try:
        return read_lines(path)
    except ValueError:
        return []


def last_line(lines: list[dict], kind: str) -> dict | None:
    """The last of `lines` (a metrics.jsonl's) of that kind, None if there is none."""
    return next((line for line in reversed(lines) if line.get("kind") == kind), None)


class MetricsLog:
    """Appends one JSON object per line; each line carries the wall time since the log was opened.

    enabled=False (data-parallel ranks other than 0) counts the lines without touching the file.
    """

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.started = time.time()
        self.lines = 0

    def write(self, **fields) -> None:
        fields = {"time": round(time.time() - self.started, 3), **fields}
        if self.enabled:
            with self.path.open("a") as file:
                file.write(json.dumps(fields) + "\n")
        self.lines += 1

    def truncate(self, lines: int) -> None:
        """Keep the first `lines` lines: a resumed run rewrites what came after its checkpoint."""
        if not self.enabled:
            self.lines = lines
            return
        kept = self.path.read_text().splitlines(keepends=True)[:lines] if self.path.exists() else []
        self.path.write_text("".join(kept))
        self.lines = len(kept)


class Reporter:
    """Progress for a person: a rich bar on a TTY; one line every `plain_every` steps otherwise; nothing when
    quiet (data-parallel ranks other than 0)."""

    def __init__(self, total_steps: int, plain_every: int = 10, console: Console | None = None,
                 quiet: bool = False):
        self.console = console or Console()
        self.quiet = quiet
        self.interactive = sys.stdout.isatty() and not quiet
        self.total, self.done, self.plain_every = total_steps, 0, plain_every
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=False)
        self.task: TaskID | None = None

    def __enter__(self):
        if self.interactive:
            self.progress.start()
            self.task = self.progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc):
        if self.interactive:
            self.progress.stop()

    def advance(self, description: str) -> None:
        self.done += 1
        if self.interactive:
            assert self.task is not None, "advance() outside `with reporter:`"
            self.progress.update(self.task, advance=1, description=description)
        elif not self.quiet and (self.done % self.plain_every == 0 or self.done == 1):
            print(description, flush=True)
        log.debug(description)

    def add_steps(self, steps: int) -> None:
        """The run now takes `steps` more steps (fewer where negative): a stage fitted to the time limit."""
        self.total += steps
        if self.interactive and self.task is not None:
            self.progress.update(self.task, total=self.total)

    def note(self, line: str) -> None:
        log.info(line)
        if self.interactive:
            self.progress.console.print(line)
        elif not self.quiet:
            print(line, flush=True)

    def final_table(self, rows: list[dict], seconds: float, run_dir: Path, completed: bool = True) -> None:
        """One row per stage done; a run the time limit stopped also shows the stage it stopped in (its `steps`
        then read "taken of planned", its best accuracy -1 before its first validation)."""
        title = (f"Curriculum finished in {seconds:.0f} s — {run_dir}" if completed else
                 f"Curriculum stopped by the time limit after {seconds:.0f} s — {run_dir} (rerun to continue)")
        table = Table(title=title)
        for column in ("stage", "segments", "steps", "best val accuracy", "seconds"):
            table.add_column(column, justify="right")
        for row in rows:
            accuracy = "-" if row["best_val_accuracy"] < 0 else f"{row['best_val_accuracy']:.1%}"
            table.add_row(str(row["stage"]), str(row["segments"]), str(row["steps"]), accuracy,
                          f"{row['seconds']:.0f}")
        self.console.print(table)
        for row in rows:
            log.info("stage %s (%s segments): %s steps, best validation accuracy %.4f, %.0f s", row["stage"],
                     row["segments"], row["steps"], row["best_val_accuracy"], row["seconds"])
