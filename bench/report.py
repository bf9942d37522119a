"""Markdown tables from the JSON of bench/bench_engine.py: `python bench/report.py bench.json`."""

from __future__ import annotations

import json
import sys


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def table(headers: list[str], align: list[str], rows: list[list[str]], lead: str = "\n") -> None:
    """A markdown table; `align` holds '---' (left) or '--:' (right) per column."""
    print(lead + "| " + " | ".join(headers) + " |")
    print("| " + " | ".join(align) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main(path: str) -> None:
    bench = json.load(open(path))
    parts = {part: [(g, bench[g][part]) for g in ("bert-base", "minilm") if part in bench.get(g, {})]
             for part in "abct"}
    print(f"Card: {bench['card']}, torch {bench['torch']}, segments of {bench['segment']} positions with "
          f"{bench['memory']} memory vectors, bf16, random weights.")
    table(["geometry", "(a) plain bf16 forward, tok/s", "extrapolation, tok/s", "ratio (goal ≥ 0.85)",
           "with CUDA graphs, tok/s", "ratio"], ["---"] + ["--:"] * 5,
          [[f"{g} (batch {a['batch']}, {a['segments']} segments)", fmt(a["plain_tok_s"]), fmt(a["recurrent_tok_s"]),
            f"{a['ratio']:.3f}", fmt(a.get("recurrent_graph_tok_s")), fmt(a.get("ratio_graph"), 3)]
           for g, a in parts["a"]])
    table(["geometry", "(b) reference-style loop, tok/s", "ours, tok/s", "speed-up (goal ≥ 6×)"],
          ["---"] + ["--:"] * 3,
          [[f"{g} (batch {b['batch']}, {b['segments']} segments)", fmt(b["reference_tok_s"]), fmt(b["ours_tok_s"]),
            f"{b['speedup']:.1f}×"] for g, b in parts["b"]])
    table(["geometry", "(c) 1M-token sample alone, s (goal ≤ 4)", "alone with CUDA graphs, s",
           "amortised over a batch, s (goal ≤ 0.6)", "amortised with CUDA graphs, s"], ["---"] + ["--:"] * 4,
          [[f"{g} ({c['segments']:,} segments, {c['content_tokens']:,} tokens; batch {c['batch']})",
            f"{c['alone_s']:.2f}", fmt(c.get("alone_graph_s"), 2), f"{c['amortised_s']:.3f}",
            fmt(c.get("amortised_graph_s"), 3)] for g, c in parts["c"]])
    if "d" in bench:
        d = bench["d"]
        print(f"\n(d) CPU sample assembly: step gather {d['step_gather_tok_s'] / 1e6:,.0f}M tokens/s (goal ≥ 100M); "
              f"one {d['sample_2m_tokens']:,}-token sample whole in {d['sample_2m_ms']:.1f} ms (goal ≤ 20 ms).")
    table(["geometry", "segments", "activation checkpointing", "train tok/s", "MFU", "peak GPU memory, MB"],
          ["---", "--:", "---", "--:", "--:", "--:"],
          [[f"{g} (batch {row['batch']})", str(row["segments"]), "yes" if row["checkpointing"] else "no",
            fmt(row["tok_s"]), "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%", fmt(row["peak_mb"])]
           for g, rows in parts["t"] for row in rows])


if __name__ == "__main__":
    main(sys.argv[1])
