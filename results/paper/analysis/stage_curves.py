"""One stage of every seed's training, side by side: its training loss (mean over each block of steps), its largest
gradient norm (before clipping) in each block, and every validation, from each seed's train_metrics.jsonl.

    python results/paper/analysis/stage_curves.py results/paper/detect --stage 8 --block 100

Tells a stage whose training inputs are not yet solved (loss left to learn from) from one whose inputs are solved
while its longer validation inputs are not (a gap of length: nothing left to learn at these lengths), and shows the
gradient spikes that undo what a stage had learnt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean


def stage_rows(path: Path, stage: int) -> tuple[list[dict], list[dict]]:
    """The stage's train and val lines of one metrics file."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    train = [row for row in rows if row.get("kind") == "train" and row.get("stage") == stage]
    val = [row for row in rows if row.get("kind") == "val" and row.get("stage") == stage]
    return train, val


def blocks_of(train: list[dict], block: int) -> list[tuple[int, float, float]]:
    """(last step of the block, mean logged loss, largest logged gradient norm) for each block of `block` steps."""
    blocks: dict[int, list[dict]] = {}
    for row in train:
        blocks.setdefault((row["step"] - 1) // block, []).append(row)
    return [((index + 1) * block, mean(row["loss"] for row in rows), max(row["grad_norm"] for row in rows))
            for index, rows in sorted(blocks.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task_folder", type=Path, help="e.g. results/paper/detect: seedN/train_metrics.jsonl")
    parser.add_argument("--stage", type=int, required=True)
    parser.add_argument("--block", type=int, default=100, help="steps per training-loss mean")
    args = parser.parse_args()

    files = sorted(args.task_folder.glob("seed*/train_metrics.jsonl"))
    if not files:
        raise SystemExit(f"{args.task_folder} holds no seedN/train_metrics.jsonl")
    for path in files:
        train, val = stage_rows(path, args.stage)
        if not train:
            raise SystemExit(f"{path} has no training steps in stage {args.stage}")
        length = val[0]["segments"] if val else "?"
        print(f"{path.parent.name}, stage {args.stage} ({train[0]['segments']} segments):")
        blocks = blocks_of(train, args.block)
        print("  training loss by steps: " + ", ".join(f"≤{step}: {loss:.2f}" for step, loss, _ in blocks))
        print("  largest gradient norm:  " + ", ".join(f"≤{step}: {norm:.1f}" for step, _, norm in blocks))
        print(f"  validation on {length} segments: " + ", ".join(f"{row['step']}: {row['val_accuracy']:.1%}"
                                                                for row in val))


if __name__ == "__main__":
    main()
