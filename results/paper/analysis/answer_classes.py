"""Accuracy per answer, per seed, at one length, from each seed's extrapolate_predictions.csv; with how often the
test noise names that answer (mean per sample) and what the wrong predictions say.

    python results/paper/analysis/answer_classes.py results/paper/detect --segments 4096

Tells a memory that loses every fact alike from one whose states for some answers hold and for others drift.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task_folder", type=Path, help="e.g. results/paper/detect: seedN/extrapolate_predictions.csv")
    parser.add_argument("--segments", type=int, default=4096)
    args = parser.parse_args()

    seeds = sorted(args.task_folder.glob("seed*/extrapolate_predictions.csv"))
    if not seeds:
        raise SystemExit(f"{args.task_folder} holds no seedN/extrapolate_predictions.csv")
    per_seed, mentions, answers = {}, defaultdict(list), set()
    for path in seeds:
        rows = [row for row in csv.DictReader(path.open()) if int(row["segments"]) == args.segments]
        if not rows:
            raise SystemExit(f"{path} has no rows at {args.segments} segments")
        right, total, wrong_said = Counter(), Counter(), Counter()
        for row in rows:
            answers.add(row["answer"])
            total[row["answer"]] += 1
            right[row["answer"]] += row["correct"] == "True"
            if row["correct"] != "True":
                wrong_said[row["predicted"]] += 1
            if path == seeds[0]:
                mentions[row["answer"]].append(int(row["noise_mentions_of_answer"]))
        per_seed[path.parent.name] = (right, total, wrong_said)

    order = sorted(answers)
    print(f"| {args.task_folder.name}, {args.segments:,} segments | " + " | ".join(order) + " | wrong answers say |")
    print("| --- | " + " | ".join("--:" for _ in order) + " | --- |")
    print("| noise names the answer (mean per sample) | "
          + " | ".join(f"{sum(mentions[a]) / len(mentions[a]):.0f}" for a in order) + " | |")
    for seed, (right, total, wrong_said) in per_seed.items():
        said = ", ".join(f"{answer} {count}" for answer, count in wrong_said.most_common(3)) or "-"
        print(f"| {seed} | " + " | ".join(f"{right[a]}/{total[a]}" for a in order) + f" | {said} |")


if __name__ == "__main__":
    main()
