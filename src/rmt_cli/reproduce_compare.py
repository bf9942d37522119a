"""`rmt reproduce compare`: one task as several runs of the protocol measured it, side by side — the tries of a
recipe, each from its own summary.json (`rmt reproduce summarize`'s, or a run's OUT/summary/)."""

from __future__ import annotations

from pathlib import Path

from rmt_cli.errors import UsageError
from rmt_cli.reproduce_summary import mean_range, plot_mean_band, plot_paper, read_json, train_minutes


def summary_file(path: Path) -> Path:
    """The summary.json that `path` names: the file itself, one in the folder, or one in a run's OUT/summary/."""
    for candidate in (path, path / "summary.json", path / "summary" / "summary.json"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"{path} holds no summary.json of `rmt reproduce summarize` (nor {path}/summary/summary.json)")


def task_result(path: Path, task: str) -> dict:
    """One run's summary of `task` (`result`), with what identifies the run: label (the path given), when it started,
    and how many seeds' curricula ran to their end (None: not recorded)."""
    file = summary_file(path)
    summary = read_json(file, "rmt reproduce compare")
    tasks = summary.get("tasks") if isinstance(summary, dict) else None
    if not isinstance(tasks, dict):
        raise UsageError(f"{file} is no summary of `rmt reproduce summarize` (it has no tasks)")
    if task not in tasks:
        raise UsageError(f"{file} has no {task} (it has {', '.join(tasks) or 'no task'})")
    result = tasks[task]
    completed = result.get("curriculum_completed")
    return {"label": str(path), "started": result.get("run", summary).get("started"), "result": result,
            "completed": None if completed is None else sum(bool(done) for done in completed.values())}


def measured_lengths(results: list[dict]) -> list[int]:
    """Every length some run measured, in order."""
    return sorted({int(n) for result in results for n in result["result"]["lengths"]})


def compare_table(task: str, results: list[dict]) -> str:
    """Markdown: one row per run, mean (min–max) over its seeds per length."""
    lengths = measured_lengths(results)
    lines = [f"| {task}: run | started (UTC) | seeds | " + " | ".join(f"{n:,}" for n in lengths)
             + " | training (mean) | curricula completed |",
             "| --- | --- | --: | " + " | ".join("--:" for _ in lengths) + " | --: | --: |"]
    for result in results:
        cells = []
        for n in lengths:
            row = result["result"]["lengths"].get(str(n))
            cells.append("-" if row is None else mean_range(row))
        seeds = len(result["result"]["seeds"])
        completed = "-" if result["completed"] is None else f"{result['completed']} of {seeds}"
        started = (result["started"] or "-").replace("T", " ").removesuffix("Z")
        lines.append(f"| {result['label']} | {started} | {seeds} | " + " | ".join(cells)
                     + f" | {train_minutes(result['result']):.1f} min | {completed} |")
    return "\n".join(lines)


def per_seed_table(task: str, results: list[dict]) -> str:
    """Markdown: one row per run and seed, the seed's accuracy per length: runs of the same seeds from the same
    starting weights (`rmt reproduce run --init-from`) compared seed by seed."""
    lengths = measured_lengths(results)
    lines = [f"| {task}: run | seed | " + " | ".join(f"{n:,}" for n in lengths) + " |",
             "| --- | --: | " + " | ".join("--:" for _ in lengths) + " |"]
    for result in results:
        for seed in result["result"]["seeds"]:
            cells = []
            for n in lengths:
                value = result["result"]["lengths"].get(str(n), {}).get("per_seed", {}).get(str(seed))
                cells.append("-" if value is None else f"{value:.1f}")
            lines.append(f"| {result['label']} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_compare(task: str, results: list[dict], path: Path) -> None:
    """Mean accuracy against input length per run, with its min–max band, and the paper's points."""
    from rmt_cli.plots import plt, save_accuracy_figure

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for result in results:
        plot_mean_band(ax, result["result"], f"{result['label']} ({len(result['result']['seeds'])} seeds)")
    plot_paper(ax, task, results[0]["result"], "black")
    save_accuracy_figure(fig, ax, path, f"{task}: runs of the protocol compared",
                         ylabel="accuracy, % (band: min to max over seeds)", legend_size=7)


def compare(paths: list[Path], task: str, plot: Path | None = None, per_seed: bool = False) -> str:
    if not paths:
        raise UsageError("give at least one summary.json (or a folder holding one) to compare")
    results = [task_result(path, task) for path in paths]
    if plot is not None:
        plot_compare(task, results, plot)
    table = compare_table(task, results)
    return table + "\n\n" + per_seed_table(task, results) if per_seed else table
