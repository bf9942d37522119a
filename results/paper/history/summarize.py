"""Collect a run of results/paper/run.sh into results/paper: summary.json, per-length CSVs and plots.

    python results/paper/summarize.py RUN_OUT_DIR --card "NVIDIA H200" --dest results/paper/attempt1
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TASKS = ("memorize", "detect", "reasoning")
PAPER = {"memorize": {32: 99.2, 512: 93.2, 4096: 90.6}, "detect": {32: 99.8, 512: 98.6, 4096: 96.1},
         "reasoning": {32: 91.6, 512: 84.8, 4096: 81.9}}


def read_rows(folder: Path) -> list[dict]:
    return json.loads((folder / "extrapolation.json").read_text())


def training_seconds(run: Path, task: str) -> float | None:
    lines = (run / f"train_{task}" / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["time"] if lines else None


def plot_tasks(results: dict[str, list[dict]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for color, (task, rows) in zip(("tab:blue", "tab:orange", "tab:green"), results.items()):
        ax.plot([r["tokens"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o", color=color,
                label=f"{task} (ours, MiniLM)")
        paper = PAPER[task]
        ax.scatter([n * 499 for n in paper], list(paper.values()), marker="x", s=60, color=color,
                   label=f"{task} (paper, bert-base)")
    ax.axhline(100 / 6, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_ylim(0, 102)
    ax.set_xlabel("input length, content tokens (log)")
    ax.set_ylabel("accuracy, %")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_fig5(run: Path, path: Path) -> dict:
    folders = sorted((run / "fig5").glob("stage*-best"), key=lambda p: int(p.name[5:-5]))
    grid = {f.name: read_rows(f) for f in folders}
    matrix = np.array([[100 * r["accuracy"] for r in rows] for rows in grid.values()])
    fig, ax = plt.subplots(figsize=(8, 3.8))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(r["segments"]) for r in next(iter(grid.values()))])
    ax.set_yticks(range(len(grid)), [f"trained on {name[5:-5]}" for name in grid])
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7, color="white" if value < 60 else "black")
    ax.set_xlabel("evaluated on N segments")
    ax.set_title("memorize: each curriculum stage's best checkpoint (accuracy %, 200 samples)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {name: {str(r["segments"]): round(100 * r["accuracy"], 1) for r in rows} for name, rows in grid.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="OUT_DIR of results/paper/run.sh")
    parser.add_argument("--card", required=True)
    parser.add_argument("--preset", default="minilm")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--command", help="the run.sh command line as run (default: PRESET=... run.sh OUT_DIR)")
    parser.add_argument("--weights", default="fp32 master weights, bf16 autocast",
                        help="how the backbone was trained (attempts 1-3: bf16 weights)")
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    results, summary = {}, {}
    for task in TASKS:
        folder = args.run / f"extrapolate_{task}"
        if not (folder / "extrapolation.json").exists():
            continue
        results[task] = read_rows(folder)
        summary[task] = {str(r["segments"]): round(100 * r["accuracy"], 1) for r in results[task]}
        shutil.copy(folder / "extrapolation.csv", args.dest / f"{task}.csv")
        shutil.copy(folder / "extrapolation.png", args.dest / f"{task}.png")
        shutil.copy(args.run / f"train_{task}" / "metrics.jsonl", args.dest / f"{task}_metrics.jsonl")
        shutil.copy(args.run / f"train_{task}" / "config.yaml", args.dest / f"{task}_config.yaml")
    plot_tasks(results, args.dest / "accuracy_vs_length.png")
    samples = {r["samples"] for rows in results.values() for r in rows}
    summary["meta"] = {
        "backbone": f"all-MiniLM-L6-v2 (22.7M parameters, {args.weights}), memory 10, 512-position segments",
        "card": args.card, "samples_per_length": min(samples), "seed": 0,
        "training_seconds": {task: training_seconds(args.run, task) for task in results},
        "commands": [args.command or f"PRESET={args.preset} results/paper/run.sh OUT_DIR"]
                    + [f"rmt train experiment={args.preset}_{t} seed=0" for t in results]
                    + ["rmt extrapolate --checkpoint OUT_DIR/train_TASK --max-segments 4096 --samples 200"],
    }
    if (args.run / "fig5").is_dir():
        summary["meta"]["fig5_memorize"] = plot_fig5(args.run, args.dest / "fig5_memorize.png")
    (args.dest / "summary.json").write_text(json.dumps(summary, indent=2))
    with (args.dest / "summary.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        lengths = sorted({int(k) for task in results for k in summary[task]})
        writer.writerow(["task", *lengths])
        for task in results:
            writer.writerow([task, *(summary[task].get(str(n), "") for n in lengths)])
    print(json.dumps({t: summary[t] for t in results}, indent=1))


if __name__ == "__main__":
    main()
