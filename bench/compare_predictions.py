"""Agreement of two `rmt extrapolate` runs of one checkpoint, from their predictions.csv: per length, each run's
accuracy and the share of test samples on which both predict the same answer.

    python bench/compare_predictions.py PLAIN/predictions.csv FAST/predictions.csv [--out agreement.json]

Both runs must have read the same fixed test sets (same checkpoint, lengths and --samples); the lengths they have in
common are compared.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def read_predictions(path: Path) -> dict[tuple[int, int], dict]:
    with path.open(newline="") as file:
        return {(int(row["segments"]), int(row["sample"])): row for row in csv.DictReader(file)}


def agreement_rows(plain: dict, fast: dict) -> list[dict]:
    rows = []
    for segments in sorted({key[0] for key in plain} & {key[0] for key in fast}):
        keys = [key for key in plain if key[0] == segments]
        missing = [key for key in keys if key not in fast]
        if missing:
            raise SystemExit(f"error: {len(missing)} samples at {segments} segments are in the first file only; "
                             "were both runs made with the same --samples?")
        rows.append({"segments": segments, "samples": len(keys),
                     "plain_accuracy": sum(plain[key]["correct"] == "True" for key in keys) / len(keys),
                     "fast_accuracy": sum(fast[key]["correct"] == "True" for key in keys) / len(keys),
                     "agreement": sum(plain[key]["predicted"] == fast[key]["predicted"] for key in keys) / len(keys)})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plain", type=Path, help="predictions.csv of the reference run")
    parser.add_argument("fast", type=Path, help="predictions.csv of the run to compare")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    for path in (args.plain, args.fast):
        if not path.is_file():
            sys.exit(f"error: {path} is not a file")
    rows = agreement_rows(read_predictions(args.plain), read_predictions(args.fast))
    if not rows:
        sys.exit("error: the two files share no length")
    for row in rows:
        print(f"{row['segments']:>6} segments, {row['samples']} samples: accuracy {100 * row['plain_accuracy']:.1f}% "
              f"vs {100 * row['fast_accuracy']:.1f}%, same prediction on {100 * row['agreement']:.1f}%")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
