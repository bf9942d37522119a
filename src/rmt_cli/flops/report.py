"""How `rmt flops` shows its rows: rich tables, CSV, JSON, the paper's Figure 3, and the files of an output folder."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rmt_cli.errors import RuntimeFailure
from rmt_cli.flops.count import BASE_TOKENS
from rmt_cli.flops.measurement import MEASURE_LABELS, MEASURE_MAX_FULL_TOKENS

PANEL_SPLIT = 32768  # Figure 3: (a) up to 32K tokens, (b) 32K to 2M tokens
COLUMNS = ("model", "tokens", "segment_length", "memory_size", "segments", "full_flops", "rmt_flops", "ratio",
           "full_multiple", "rmt_multiple", "convention")


def to_csv(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or (rows[0].keys() if rows else COLUMNS)),
                            lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_json(rows: Sequence[dict]) -> str:
    return json.dumps(list(rows), indent=2)


def _sci(value: float | None) -> str:
    return "—" if value is None else f"{value:.3e}"


def _times(value: float) -> str:
    return f"×{value:,.1f}" if value < 1000 else f"×{value:,.0f}"


def render_table(rows: Sequence[dict], segment_length: int, memory_size: int, conv: str):
    """The rich table of analytic rows (`count.compare`), one section per model."""
    from rich.table import Table

    table = Table(title=f"Forward FLOPs: full attention vs RMT (segment {segment_length}, memory {memory_size}, "
                        f"convention '{conv}')",
                  caption=f"multiples are of one full-attention forward over {BASE_TOKENS} tokens")
    for header in ("model", "tokens", "segments", "full attention", "RMT", "full ÷ RMT", f"full ×{BASE_TOKENS}",
                   f"RMT ×{BASE_TOKENS}"):
        table.add_column(header, justify="left" if header == "model" else "right")
    previous = None
    for row in rows:
        if previous is not None and row["model"] != previous:
            table.add_section()
        previous = row["model"]
        table.add_row(row["model"], f"{row['tokens']:,}", f"{row['segments']:,}", _sci(row["full_flops"]),
                      _sci(row["rmt_flops"]), f"{row['ratio']:,.2f}", _times(row["full_multiple"]),
                      _times(row["rmt_multiple"]))
    return table


def render_measure_table(rows: Sequence[dict]):
    """The rich table of measured rows (`measurement.measure`): analytic vs counted, with the relative error."""
    from rich.table import Table

    table = Table(title="Analytic (matmul convention) vs FlopCounterMode, batch 1",
                  caption="full: one forward over all tokens (— where longer than the model's positions or "
                          f"{MEASURE_MAX_FULL_TOKENS:,} tokens); RMT: one forward per segment through the engine, "
                          f"with a {MEASURE_LABELS}-class head")
    for header in ("model", "tokens", "segments", "full analytic", "full measured", "error", "RMT analytic",
                   "RMT measured", "error"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in rows:
        full_error = "—" if row["full_error"] is None else f"{100 * row['full_error']:.2f}%"
        table.add_row(row["model"], f"{row['tokens']:,}", f"{row['segments']:,}", _sci(row["full_analytic"]),
                      _sci(row["full_measured"]), full_error, _sci(row["rmt_analytic"]),
                      _sci(row["rmt_measured"]), f"{100 * row['rmt_error']:.2f}%")
    return table


def curve_lengths(tokens: Sequence[int]) -> list[int]:
    """Where the figure's curves are drawn: from 512 tokens, doubling, up to the longest requested length, and
    through every requested length."""
    top, grid, n = max(tokens), [], BASE_TOKENS
    while n < top:
        grid.append(n)
        n *= 2
    return sorted({*grid, top, *tokens})


def plot_figure(rows: Sequence[dict], path: Path, curves: Sequence[dict] | None = None) -> Path:
    """Figure 3 of the paper: FLOPs as a multiple of the 512-token cost vs input tokens, log-log.

    `curves` (rows at `curve_lengths`, default `rows`) are drawn as lines, the requested `rows` as markers. Inputs
    longer than 32K tokens get a second panel from 32K up, as in the paper.
    """
    from rmt_cli.plots import agg_figure

    curves = rows if curves is None else curves
    top = max(row["tokens"] for row in curves)
    fig = agg_figure(figsize=(13 if top > PANEL_SPLIT else 8, 5.2), layout="constrained")
    panels = [(lambda n: n <= PANEL_SPLIT, f"(a) up to {min(top, PANEL_SPLIT):,} tokens")]
    if top > PANEL_SPLIT:
        panels.append((lambda n: n >= PANEL_SPLIT, f"(b) {PANEL_SPLIT:,} to {top:,} tokens"))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    models = list(dict.fromkeys(row["model"] for row in curves))
    for ax, (keep, title) in zip(axes, panels, strict=True):
        for i, model in enumerate(models):
            color = f"C{i % 10}"
            for table, style in ((curves, "line"), (rows, "marks")):
                points = sorted((r["tokens"], r["full_multiple"], r["rmt_multiple"]) for r in table
                                if r["model"] == model and keep(r["tokens"]))
                if not points:
                    continue
                xs, full, rmt = zip(*points, strict=True)
                if style == "line":
                    ax.plot(xs, full, color=color, linewidth=1.6, label=f"{model} full attention")
                    ax.plot(xs, rmt, color=color, linewidth=1.2, linestyle=":", label=f"{model} RMT")
                else:
                    ax.plot(xs, full, color=color, marker="o", markersize=6, linestyle="none")
                    ax.plot(xs, rmt, color=color, marker="s", markersize=6, linestyle="none")
        lengths = sorted({row["tokens"] for row in curves if keep(row["tokens"])})
        ax.plot(lengths, [(n / BASE_TOKENS) ** 2 for n in lengths], color="black", linestyle="--", linewidth=1,
                label="quadratic growth")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("input tokens (markers: requested lengths)")
        ax.set_ylabel(f"FLOPs, multiple of the {BASE_TOKENS}-token cost")
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7)
    fig.suptitle("Forward FLOPs of full attention vs RMT (log-log)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def write_outputs(rows: Sequence[dict], out: Path, plot: bool = True,
                  curves: Sequence[dict] | None = None) -> list[Path]:
    """flops.csv and flops.png (analytic rows), or flops_measured.csv (`plot=False`), into `out`; the paths
    written are listed on stderr."""
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / ("flops.csv" if plot else "flops_measured.csv")
        csv_path.write_text(to_csv(rows))
        written.append(csv_path)
        if plot:
            written.append(plot_figure(rows, out / "flops.png", curves))
    except OSError as error:
        raise RuntimeFailure(f"cannot write {error.filename or out} ({error.strerror}); "
                             "choose another folder with --out DIR") from None
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return written
