"""`rmt reproduce status OUT`: where each run of a protocol stands while it runs (detached, or on another node),
read from its files alone: the training's stage, step and last validation, then how far its extrapolation got."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from rmt_cli.errors import UsageError
from rmt_cli.reproduce import PLAN, seed_folder


def last_lines(metrics: Path) -> tuple[dict | None, dict | None]:
    """The last training line and the last validation line of a run's metrics.jsonl (None: none yet)."""
    train = val = None
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line being written
                continue
            if row.get("kind") == "train":
                train = row
            elif row.get("kind") == "val":
                val = row
    return train, val


def stage_budgets(config: Path) -> list[int]:
    """Each curriculum stage's step budget, from the config the run saved (empty before it saved one)."""
    import yaml

    try:
        return [int(stage["steps"]) for stage in yaml.safe_load(config.read_text())["curriculum"]["stages"]]
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return []


def job_state(status: Path) -> str | None:
    """'exit N, S s' once a job has ended; None while it runs (or before it started)."""
    try:
        ended = json.loads(status.read_text())
        return f"exit {ended['exit_code']}, {ended['seconds']:.0f} s"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def training_cell(folder: Path) -> str:
    ended = job_state(folder / "train.status.json")
    train, val = last_lines(folder / "train" / "metrics.jsonl")
    if train is None:
        return ended or "starting"
    budgets = stage_budgets(folder / "train" / "config.yaml")
    of = f"/{budgets[train['stage'] - 1]}" if len(budgets) >= train["stage"] else ""
    parts = [ended or f"{train['time'] / 60:.1f} min",
             f"stage {train['stage']}/{len(budgets) or '?'} step {train['step']}{of} ({train['segments']} seg)"]
    if val is not None:
        parts.append(f"val {100 * val['val_accuracy']:.1f}% ({val['segments']} seg, stage {val['stage']} step "
                     f"{val['step']})")
    return " · ".join(parts)


def extrapolation_cell(folder: Path, name: str = "extrapolate") -> str:
    ended = job_state(folder / f"{name}.status.json")
    try:
        rows = json.loads((folder / name / "extrapolation.json").read_text())
    except (OSError, ValueError):
        rows = []
    measured = ", ".join(f"{row['segments']:,}: {100 * row['accuracy']:.1f}" for row in rows)
    if ended is None and not rows and not (folder / f"{name}.out").exists():
        return "-"
    return " · ".join(part for part in (measured, ended or "running") if part)


def status_table(out: Path) -> Table:
    try:
        plan = json.loads((out / PLAN).read_text())
    except (OSError, ValueError):
        raise UsageError(f"{out} holds no plan of `rmt reproduce run` ({PLAN})") from None
    beyond = plan.get("beyond")
    table = Table(title=f"{out}: {plan['preset']} presets, started {plan['started']} on {plan['card']}")
    for column in ("task", "seed", "training", "extrapolation: segments: accuracy %"):
        table.add_column(column)
    if beyond:
        table.add_column(f"{beyond['segments']:,} segments")
    for task in plan["tasks"]:
        for seed in plan["seeds"]:
            folder = seed_folder(out, task, seed)
            cells = [task, str(seed), training_cell(folder), extrapolation_cell(folder)]
            if beyond:
                cells.append(extrapolation_cell(folder, f"extrapolate_{beyond['segments']}")
                             if seed == beyond["seed"] else "")
            table.add_row(*cells)
    return table
