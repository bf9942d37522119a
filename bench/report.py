"""Markdown tables from the JSON of bench/bench_engine.py: `python bench/report.py bench.json`."""

from __future__ import annotations

import json
import sys


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def main(path: str) -> None:
    bench = json.load(open(path))
    geometries = [g for g in ("bert-base", "minilm") if g in bench]
    print(f"Card: {bench['card']}, torch {bench['torch']}, segments of {bench['segment']} positions with "
          f"{bench['memory']} memory vectors, bf16, random weights.\n")
    print("| geometry | (a) plain bf16 forward, tok/s | extrapolation, tok/s | ratio (goal ≥ 0.85) |"
          " with CUDA graphs, tok/s | ratio |")
    print("| --- | --: | --: | --: | --: | --: |")
    for g in geometries:
        a = bench[g].get("a")
        if a:
            print(f"| {g} (batch {a['batch']}, {a['segments']} segments) | {fmt(a['plain_tok_s'])} | "
                  f"{fmt(a['recurrent_tok_s'])} | {a['ratio']:.3f} | {fmt(a.get('recurrent_graph_tok_s'))} | "
                  f"{fmt(a.get('ratio_graph'), 3)} |")
    print("\n| geometry | (b) reference-style loop, tok/s | ours, tok/s | speed-up (goal ≥ 6×) |")
    print("| --- | --: | --: | --: |")
    for g in geometries:
        b = bench[g].get("b")
        if b:
            print(f"| {g} (batch {b['batch']}, {b['segments']} segments) | {fmt(b['reference_tok_s'])} | "
                  f"{fmt(b['ours_tok_s'])} | {b['speedup']:.1f}× |")
    print("\n| geometry | (c) 1M-token sample alone, s (goal ≤ 4) | alone with CUDA graphs, s |"
          " amortised over a batch, s (goal ≤ 0.6) | amortised with CUDA graphs, s |")
    print("| --- | --: | --: | --: | --: |")
    for g in geometries:
        c = bench[g].get("c")
        if c:
            print(f"| {g} ({c['segments']:,} segments, {c['content_tokens']:,} tokens; batch {c['batch']}) | "
                  f"{c['alone_s']:.2f} | {fmt(c.get('alone_graph_s'), 2)} | {c['amortised_s']:.3f} | "
                  f"{fmt(c.get('amortised_graph_s'), 3)} |")
    if "d" in bench:
        d = bench["d"]
        print(f"\n(d) CPU sample assembly: step gather {d['step_gather_tok_s'] / 1e6:,.0f}M tokens/s (goal ≥ 100M); "
              f"one {d['sample_2m_tokens']:,}-token sample whole in {d['sample_2m_ms']:.1f} ms (goal ≤ 20 ms).")
    print("\n| geometry | segments | activation checkpointing | train tok/s | MFU | peak GPU memory, MB |")
    print("| --- | --: | --- | --: | --: | --: |")
    for g in geometries:
        for row in bench[g].get("t", []):
            mfu = "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
            print(f"| {g} (batch {row['batch']}) | {row['segments']} | {'yes' if row['checkpointing'] else 'no'} | "
                  f"{fmt(row['tok_s'])} | {mfu} | {fmt(row['peak_mb'])} |")


if __name__ == "__main__":
    main(sys.argv[1])
