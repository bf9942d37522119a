"""`rmt reproduce status OUT`: where each run of a protocol stands while it runs (detached, or on another node),
read from its files alone: the training's stage, step and last validation, then how far its extrapolation got."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from rmt_cli.metrics import last_line, readable_lines
from rmt_cli.reproduce import job_status, plan_followers, read_plan, seed_folder
from rmt_cli.reproduce_summary import reverts, saved_curriculum


def job_state(status: Path) -> str | None:
    """'exit N, S s' once a job has ended; None while it runs (or before it started)."""
    ended = job_status(status)
    return None if ended is None else f"exit {ended['exit_code']}, {ended['seconds']:.0f} s"


def training_cell(folder: Path) -> str:
    ended = job_state(folder / "train.status.json")
    rows = readable_lines(folder / "train" / "metrics.jsonl")
    # the last training, validation and `fit` (trainer.fit_time_limit's cut) lines (None: none yet)
    train, val, fit = last_line(rows, "train"), last_line(rows, "val"), last_line(rows, "fit")
    if train is None:  # a job writes its train.out from its start; without one it waits for a slot (--parallel)
        return ended or ("starting" if (folder / "train.out").exists() else "waiting for a free slot")
    curriculum = saved_curriculum(folder / "train")
    budgets = [] if curriculum is None else [stage.steps for stage in curriculum.stages]
    of = f"/{budgets[train['stage'] - 1]}" if len(budgets) >= train["stage"] else ""
    if fit is not None and fit["stage"] == train["stage"] and fit["steps"] < fit["planned"]:  # cut to the time limit
        of = f"/{fit['steps']} (cut from {fit['planned']})"
    parts = [ended or f"{train['time'] / 60:.1f} min",
             f"stage {train['stage']}/{len(budgets) or '?'} step {train['step']}{of} ({train['segments']} seg)"]
    if val is not None:
        parts.append(f"val {100 * val['val_accuracy']:.1f}% ({val['segments']} seg, stage {val['stage']} step "
                     f"{val['step']})")
    sent_back = reverts(rows)  # trainer.revert_drop sent the weights back to a stage's best
    if sent_back:
        where = ", ".join(f"stage {row['stage']} step {row['step']}" for row in sent_back)
        parts.append(f"reverted to the stage's best at {where}")
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
    plan = read_plan(out)
    followers = plan_followers(plan)
    table = Table(title=f"{out}: {plan['preset']} presets, started {plan['started']} on {plan['card']}")
    for column in ("task", "seed", "training", "extrapolation: segments: accuracy %"):
        table.add_column(column)
    for follower in followers:
        table.add_column(follower.label)
    for task in plan["tasks"]:
        for seed in plan["seeds"]:
            folder = seed_folder(out, task, seed)
            cells = [task, str(seed), training_cell(folder), extrapolation_cell(folder)]
            cells += [extrapolation_cell(folder, follower.name) if follower.applies(seed) else ""
                      for follower in followers]
            table.add_row(*cells)
    return table
