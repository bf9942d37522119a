"""Every summarised seed of a task, across runs: the best validation it reached on inputs of one length during
training, beside its test accuracy at another length, sorted by the validation. Tells whether a validation length
predicts the test length, i.e. whether a run can tell, before its test, which seeds will hold.

    python results/paper/analysis/validation_vs_test.py results/paper --task detect --val-segments 256 \
        --test-segments 4096
    python results/paper/analysis/validation_vs_test.py results/paper --val-segments 128  # the 16-segment stage's

Reads TASK/seedN/train_metrics.jsonl and TASK/seedN/extrapolate_extrapolation.json of every summary folder under
the given folders (`rmt reproduce summarize` writes them); a seed without a validation at that length is left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def best_validation(metrics: Path, segments: int) -> float | None:
    """The best validation accuracy of any stage at `segments` segments, or None when none was run there."""
    accuracies = [row["val_accuracy"] for row in map(json.loads, metrics.read_text().splitlines())
                  if row.get("kind") == "val" and str(row.get("segments")) == str(segments)]
    return max(accuracies, default=None)


def test_accuracy(extrapolation: Path, segments: int) -> float | None:
    if not extrapolation.exists():
        return None
    rows = json.loads(extrapolation.read_text())
    return next((row["accuracy"] for row in rows if row["segments"] == segments), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="summary folders, searched recursively")
    parser.add_argument("--task", default="detect")
    parser.add_argument("--val-segments", type=int, default=256)
    parser.add_argument("--test-segments", type=int, default=4096)
    args = parser.parse_args()

    seeds = []
    for folder in args.folders:
        for metrics in sorted(folder.glob(f"**/{args.task}/seed*/train_metrics.jsonl")):
            validation = best_validation(metrics, args.val_segments)
            test = test_accuracy(metrics.with_name("extrapolate_extrapolation.json"), args.test_segments)
            if validation is not None and test is not None:
                seeds.append((validation, test, metrics.parent))
    if not seeds:
        raise SystemExit(f"no {args.task} seed under {', '.join(map(str, args.folders))} has both a "
                         f"{args.val_segments}-segment validation and a {args.test_segments}-segment test")
    print(f"| best validation, {args.val_segments} segments | test, {args.test_segments} segments | seed |")
    print("| --: | --: | --- |")
    for validation, test, folder in sorted(seeds, key=lambda seed: (seed[0], seed[1])):
        print(f"| {validation:.1%} | {test:.1%} | {folder} |")


if __name__ == "__main__":
    main()
