"""Reasoning accuracy per length split by what the memory alone had to bring to the question: every fact before the
question's segment, or the last fact read in the question's own segment; for questions that one fact names, and for
those that both facts name (where the relation's direction decides). Reads the predictions.csv files that
`rmt extrapolate` writes (columns segments, correct, facts_naming_question, last_fact_segment); runs extrapolated
since `accuracy_several_facts_before_question` existed have the same split in their extrapolation.json.

    python results/paper/analysis/from_memory.py \
        results/paper/history/mpnet_reasoning_seed0/reasoning/seed0/extrapolate_predictions.csv
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def split(path: Path) -> dict[tuple[int, str, str], list[int]]:
    """(segments, question kind, where the last fact is) -> [right, answers], from inputs of 2+ segments."""
    counts: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0])
    with path.open() as file:
        for row in csv.DictReader(file):
            segments = int(row["segments"])
            if segments == 1:
                continue  # one segment: every fact is read with the question
            kind = "both facts name the question" if int(row["facts_naming_question"]) > 1 else "one fact names it"
            where = "a fact beside the question" if int(row["last_fact_segment"]) == segments - 1 else "memory only"
            counts[segments, kind, where][0] += row["correct"] == "True"
            counts[segments, kind, where][1] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, nargs="+", help="predictions.csv of `rmt extrapolate`")
    args = parser.parse_args()
    for path in args.predictions:
        print(f"{path}\n| segments | question | facts | accuracy (answers) |\n| --: | --- | --- | --: |")
        for (segments, kind, where), (right, answers) in sorted(split(path).items()):
            print(f"| {segments} | {kind} | {where} | {100 * right / answers:.1f}% ({answers}) |")


if __name__ == "__main__":
    main()
