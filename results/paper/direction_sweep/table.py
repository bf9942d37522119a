"""The direction sweep's table: for each arm of `run.sh`, its training loss, the validation step whose weights were
tested, and its test accuracy split by what only the memory could bring.

    python results/paper/direction_sweep/table.py results/paper/direction_sweep/{short,long,scratch}

Reads each arm folder's config.yaml, metrics.jsonl.gz, extrapolation.json and predictions.csv.gz (as `run.sh` leaves
them, compressed). "direction from memory": questions that both facts name, every fact before the question's segment
(a coin toss between the two places the facts name unless the memory keeps which way each relation goes); "one fact,
from memory": questions that one fact names, same placement.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from collections import defaultdict
from pathlib import Path

import yaml

LENGTHS = (2, 4, 8, 16)


def from_memory(predictions: Path) -> dict[tuple[int, bool], list[int]]:
    """(segments, both facts name the question) -> [right, answers], for inputs whose every fact precedes the
    question's segment."""
    counts: dict[tuple[int, bool], list[int]] = defaultdict(lambda: [0, 0])
    with gzip.open(predictions, "rt") as file:
        for row in csv.DictReader(file):
            segments = int(row["segments"])
            if segments > 1 and int(row["last_fact_segment"]) < segments - 1:
                key = (segments, int(row["facts_naming_question"]) > 1)
                counts[key][0] += row["correct"] == "True"
                counts[key][1] += 1
    return counts


def share(counts: dict[tuple[int, bool], list[int]], segments: int, both: bool) -> str:
    right, answers = counts.get((segments, both), (0, 0))
    return f"{100 * right / answers:.1f} ({answers})" if answers else "-"


def stage_of(arm: Path) -> str:
    """Where the arm started and its stage as its config gives it, e.g. `first stage; 2 seg, lr 0.0001, ...`."""
    config = yaml.safe_load((arm / "config.yaml").read_text())
    stage = config["curriculum"]["stages"][-1]
    segments = stage["segments"]
    parts = [f"{segments[0]}-{segments[1]} seg" if isinstance(segments, list) else f"{segments} seg",
             f"lr {stage['lr']:g}"]
    if stage.get("facts_before_question"):
        parts.append("facts before question")
    if stage.get("multi_fact_share"):
        parts.append(f"two-fact share {stage['multi_fact_share']}")
    if config["memory"]["size"] != 10:
        parts.append(f"memory {config['memory']['size']}")
    if config["memory"].get("every_layer"):
        parts.append("memory at every layer")
    if config["memory"].get("associative"):
        parts.append("associative memory")
    if config["trainer"].get("memory_map"):
        trainer = config["trainer"]
        read = f", hidden {trainer['memory_map_hidden']}" if trainer.get("memory_map_hidden") else ""
        parts.append(f"memory map {trainer['memory_map']:g} ({trainer.get('memory_map_target', 'relations')}{read})")
    if config["backbone"]["name"] != "minilm":
        parts.append(f"{config['backbone']['name']}, {config['task']['head']} head")
    start = "first stage" if config["trainer"].get("init_from") else "pretrained"
    return f"{start}; " + ", ".join(parts)


def training(arm: Path) -> tuple[int, float, int, float]:
    """(steps, mean loss over the last 1,000 steps, the tested weights' step, their validation accuracy)."""
    rows = [json.loads(line) for line in gzip.open(arm / "metrics.jsonl.gz", "rt")]
    losses = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train" and "loss" in r]
    last = losses[-1][0]
    tail = [loss for step, loss in losses if step > last - 1000]
    best_step, best = 0, -1.0
    for r in rows:
        if r.get("val_accuracy") is not None and r["val_accuracy"] >= best:  # a tie keeps the later weights
            best_step, best = r["step"], r["val_accuracy"]
    return last, sum(tail) / len(tail), best_step, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", type=Path, nargs="+", help="folders of arms (short, long, ..., mapped, mapped_first)")
    args = parser.parse_args()
    print("| arm | start; stage | steps | loss, last 1,000 steps | weights tested (validation) | test accuracy "
          "2 / 4 / 8 / 16 segments | direction from memory, 2 / 4 / 8 (answers) | one fact from memory, 2 / 4 / 8 |")
    print("| --- | --- | --: | --: | --- | --- | --- | --- |")
    for sweep in args.sweeps:
        for arm in sorted(p for p in sweep.iterdir() if (p / "extrapolation.json").exists()):
            steps, loss, best_step, best = training(arm)
            tests = {r["segments"]: r["accuracy"] for r in json.loads((arm / "extrapolation.json").read_text())}
            counts = from_memory(arm / "predictions.csv.gz")
            accuracy = " / ".join(f"{100 * tests[n]:.1f}" for n in LENGTHS if n in tests)
            direction = " / ".join(share(counts, n, True) for n in LENGTHS[:3])
            one_fact = " / ".join(share(counts, n, False) for n in LENGTHS[:3])
            print(f"| {sweep.name}/{arm.name} | {stage_of(arm)} | {steps:,} | {loss:.2f} | step {best_step:,} "
                  f"({100 * best:.1f}%) | {accuracy} | {direction} | {one_fact} |")


if __name__ == "__main__":
    main()
