"""Throughput of the runs of results/ddp/run.sh: tokens of steps 11..60 over their wall time (metrics.jsonl)."""

import json
import sys
from pathlib import Path

TOKENS_PER_STEP = 64 * 4 * 512  # global batch x segments x positions

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
for name in ("minilm", "bertbase"):
    rates = {}
    for gpus in (1, 2):
        path = folder / f"{name}_{gpus}" / "metrics.jsonl"  # run.sh's OUT_DIR, or the copies kept here
        path = path if path.exists() else folder / f"{name}_{gpus}_metrics.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        times = {line["step"]: line["time"] for line in lines if line["kind"] == "train"}
        rates[gpus] = 50 * TOKENS_PER_STEP / (times[60] - times[10])
    print(f"{name}: 1 GPU {rates[1]:,.0f} tok/s, 2 GPUs {rates[2]:,.0f} tok/s, speed-up {rates[2] / rates[1]:.2f}x")
