"""results/paper/summary.json and accuracy_vs_length.png from the best attempt of each task.

    python results/paper/combine.py memorize=attempt4 detect=attempt6 reasoning=attempt4
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from summarize import plot_tasks

HERE = Path(__file__).parent


def main(choices: dict[str, str]) -> None:
    summary, rows, commands, seconds, cards = {}, {}, [], {}, set()
    for task, attempt in choices.items():
        source = json.loads((HERE / attempt / "summary.json").read_text())
        summary[task] = source[task]
        rows[task] = [{"tokens": int(n) * 499, "accuracy": acc / 100} for n, acc in source[task].items()]
        commands.append(f"{task} ({attempt}): " + (HERE / attempt / "COMMAND").read_text().strip())
        seconds[task] = source["meta"]["training_seconds"][task]
        cards.add(source["meta"]["card"])
        backbone = source["meta"]["backbone"]
        samples = source["meta"]["samples_per_length"]
    summary["meta"] = {"backbone": backbone, "card": ", ".join(sorted(cards)), "samples_per_length": samples,
                       "seed": 0, "attempts": choices, "training_seconds": seconds, "commands": commands}
    (HERE / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_tasks(rows, HERE / "accuracy_vs_length.png")
    print(json.dumps({t: {n: summary[t][n] for n in ("1", "8", "32", "512", "4096")} for t in choices}, indent=1))


if __name__ == "__main__":
    main(dict(arg.split("=", 1) for arg in sys.argv[1:]))
