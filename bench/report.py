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


PATHS = (("", "today's path (fp32 weights, autocast, eager)"), ("_graph", "+ CUDA graphs"),
         ("_bf16", "bf16 weights"), ("_bf16_graph", "bf16 weights + CUDA graphs"))
# Part a also times fused blocks (BERT-family geometries) and compiled blocks when run with --compile ("-" where a
# run did not).
A_PATHS = (*PATHS, ("_bf16_fused", "bf16 weights, fused blocks"), ("_bf16_fused_graph", "fused blocks + CUDA graphs"),
           ("_bf16_compiled", "bf16 weights, compiled blocks"))


def ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}×"


def fast_path_tables(parts: dict) -> None:
    """The inference paths of runs that measured them (parts a and c with `_bf16` keys, part g)."""
    measured = [(g, a) for g, a in parts["a"] if "ratio_bf16" in a]
    table(["geometry", "plain forward, fp32 weights + autocast, tok/s", "plain forward, bf16 weights",
           *(name for _, name in A_PATHS)], ["---"] + ["--:"] * (2 + len(A_PATHS)),
          [[f"{g} (batch {a['batch']}, {a['segments']} segments)", fmt(a["plain_tok_s"]),
            f"{fmt(a['plain_bf16_tok_s'])} ({ratio(a['ratio_plain_bf16'])})",
            *(f"{fmt(a.get(f'recurrent{k}_tok_s'))} ({ratio(a.get(f'ratio{k}'))})" for k, _ in A_PATHS)]
           for g, a in measured],
          lead="\n(a) tokens/s, and in brackets the ratio to the plain fp32-weights forward\n\n")
    measured = [(g, c) for g, c in parts["c"] if "alone_bf16_s" in c]
    table(["geometry", *(f"(c) alone, {name}, s" for _, name in PATHS), "amortised, today's path, s",
           "amortised, bf16 weights, s"], ["---"] + ["--:"] * 6,
          [[f"{g} ({c['content_tokens']:,} tokens; batch {c['batch']})",
            *(fmt(c.get(f"alone{k}_s"), 2) for k, _ in PATHS), fmt(c["amortised_s"], 3),
            fmt(c.get("amortised_bf16_s"), 3)] for g, c in measured])
    table(["geometry", "(g) weights", "batch", "eager, ms per segment", "CUDA graph, ms per segment",
           "graph speed-up"], ["---", "---", "--:", "--:", "--:", "--:"],
          [[g, row["weights"], str(row["batch"]), fmt(row["eager_ms_per_segment"], 2),
            fmt(row["graph_ms_per_segment"], 2), ratio(row["graph_speedup"])]
           for g, rows in parts["g"] for row in rows])


def checkpointing(row: dict) -> str:
    """A training row's activation checkpointing: no, yes (non-reentrant), or yes, reentrant."""
    return "no" if not row["checkpointing"] else "yes, reentrant" if row.get("reentrant") else "yes"


def compile_mode(row: dict) -> str:
    """" (MODE)" for a row on blocks compiled in a torch.compile mode other than the default, else ""."""
    mode = row.get("compile_mode")
    return f" ({mode})" if row.get("compiled") and mode not in (None, "default") else ""


def speed(row: dict) -> str:
    """A training row's tokens/s, or why it has none."""
    return "failed" if row.get("failed") else "out of memory" if row.get("out_of_memory") else fmt(row["tok_s"])


def training_table(rows: list, label: str) -> None:
    """Training rows; a column per switch that some row records (`fused_adamw`, `compiled`)."""
    switches = [(key, name) for key, name in (("fused_adamw", "fused AdamW"), ("compiled", "compiled blocks"),
                                              ("fused_blocks", "fused blocks")) if any(key in row for _, row in rows)]
    table(["geometry", "segments", "activation checkpointing", *(name for _, name in switches),
           f"{label} tok/s", "MFU", "peak GPU memory, MB"], ["---", "--:", "---", *(["---"] * len(switches)),
                                                            "--:", "--:", "--:"],
          [[f"{g} (batch {row['batch']})", str(row["segments"]), checkpointing(row),
            *(("yes" + (compile_mode(row) if key == "compiled" else "")) if row.get(key) else "no"
              for key, _ in switches),
            speed(row),
            "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%", fmt(row["peak_mb"])] for g, row in rows])


def fused_against_transformers(parts: dict) -> None:
    """Part f's rows beside part t's rows of the same geometry and settings: what `trainer.fused_blocks` gives."""
    def same_row(g: str, row: dict) -> tuple:
        return g, row["segments"], row["checkpointing"], row.get("reentrant"), row.get("fused_adamw")

    plain = {same_row(g, row): row for g, rows in parts["t"] for row in rows if not row.get("compiled")}
    pairs = [(g, plain[same_row(g, row)], row) for g, rows in parts["f"] for row in rows if same_row(g, row) in plain]
    table(["geometry", "segments", "activation checkpointing", "AdamW", "transformers' blocks, tok/s",
           "fused blocks, tok/s", "speed-up", "peak MB, transformers' / fused"],
          ["---", "--:", "---", "---", "--:", "--:", "--:", "--:"],
          [[f"{g} (batch {row['batch']})", str(row["segments"]), checkpointing(row),
            "fused" if row.get("fused_adamw") else "multi-tensor", fmt(ours["tok_s"]), fmt(row["tok_s"]),
            ratio(row["tok_s"] / ours["tok_s"]), f"{fmt(ours['peak_mb'])} / {fmt(row['peak_mb'])}"]
           for g, ours, row in pairs])


def main(path: str) -> None:
    bench = json.load(open(path))
    geometries = [g for g, value in bench.items() if isinstance(value, dict) and g != "d"]
    parts = {part: [(g, bench[g][part]) for g in geometries if part in bench[g]] for part in "abcfmtgspw"}
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
    training_table([(g, row) for g, rows in parts["t"] for row in rows], "train")
    if parts["f"]:
        training_table([(g, row) for g, rows in parts["f"] for row in rows], "(f) train, fused blocks")
        fused_against_transformers(parts)
    if parts["m"]:
        table(["geometry", "(m) segment counts", "drawn per", "checkpoints", "segment steps", "row segments",
               "train tok/s", "speed-up", "card busy", "tok/s of a busy card"],
              ["---", "--:", "---", "---", "--:", "--:", "--:", "--:", "--:", "--:"],
              [[f"{g} (batch {row['batch']}, {row['batches']} batches)", "{}-{}".format(*row["segments"]),
                row["lengths_per"], ("reentrant" if row["reentrant"] else "non-reentrant")
                + (", compiled blocks" if row["compiled"] else "")
                + (", bf16 working copy" if row.get("compute_dtype") == "bf16" else ""), str(row["segment_steps"]),
                str(row["row_segments"]), fmt(row["tok_s"]), ratio(row["speedup"]),
                "-" if row.get("device_busy_s") is None else f"{100 * row['device_busy_s'] / row['seconds']:.0f}%",
                fmt(row.get("busy_tok_s"))]
               for g, rows in parts["m"] for row in rows])
    if any("ratio_bf16" in a for _, a in parts["a"]):
        fast_path_tables(parts)
    if parts["s"]:
        training_table([(g, row) for g, rows in parts["s"] for row in rows], "(s) decoder train")
    if parts["w"]:
        table(["geometry", "(w) segments", "training step runs on", "train tok/s", "MFU", "step, s", "speed-up"],
              ["---", "--:", "---", "--:", "--:", "--:", "--:"],
              [[f"{g} (batch {row['batch']})", str(row["segments"]),
                ("bf16 working copy" if row["compute_dtype"] == "bf16" else "fp32 weights, autocast")
                + (", fused blocks" if row.get("fused_blocks") else "")
                + (", compiled blocks" + compile_mode(row) if row.get("compiled") else ""),
                speed(row), "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%", fmt(row["step_s"], 3),
                ratio(row.get("speedup"))] for g, rows in parts["w"] for row in rows])
    if parts["p"]:
        table(["geometry", "(p) segments, BPTT window", "segments before the window", "train tok/s", "step, s",
               "speed-up", "peak GPU memory, MB"], ["---", "--:", "---", "--:", "--:", "--:", "--:"],
              [[f"{g} (batch {row['batch']})", f"{row['segments']}, {row['bptt_segments']}",
                "bf16 copy" if row["prefix_dtype"] == "bf16" else "fp32 weights, autocast", fmt(row["tok_s"]),
                f"{row['step_s']:.3f}", ratio(row.get("speedup")), fmt(row["peak_mb"])]
               for g, rows in parts["p"] for row in rows])
    for g in geometries:
        for key in ("t_profile", "s_profile"):
            if key in bench[g]:
                table(["op", "calls", "self device time, ms", "self host time, ms"], ["---", "--:", "--:", "--:"],
                      [[f"`{row['op']}`", str(row["calls"]), fmt(row["self_device_ms"], 2),
                        fmt(row["self_cpu_ms"], 2)] for row in bench[g][key]],
                      lead=f"\n{g}: one training step ({key[0]}, largest segment count, fused AdamW), top ops\n\n")


if __name__ == "__main__":
    main(sys.argv[1])
