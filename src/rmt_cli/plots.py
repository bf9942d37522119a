"""Matplotlib set-up shared by every command that draws, and the figures people would rather look at than read:
accuracy against input length, and how long a memory holds a fact.

Figures are drawn off-screen (Agg). Code that keeps a figure to itself uses `agg_figure`, which stays out of
pyplot's registry; code that uses pyplot's `plt.subplots` saves (and frees) its figures with `save_figure`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def agg_figure(**options) -> Figure:
    """A figure (`Figure` options: figsize, layout, ...) drawn by Agg and unknown to pyplot: nothing to close."""
    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Tighten the layout of a pyplot figure, write it to `path` and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_extrapolation(rows: list[dict], trained_segments: int, content_per_segment: int, path: Path,
                       title: str, chance: float) -> None:
    """Accuracy (%) against input tokens on a log axis; the trained lengths shaded, chance dashed."""
    fig, ax = plt.subplots(figsize=(7, 4))
    tokens = [row["tokens"] for row in rows]
    ax.plot(tokens, [100 * row["accuracy"] for row in rows], marker="o")
    ax.axvspan(min(tokens + [content_per_segment]), trained_segments * content_per_segment, color="tab:green",
               alpha=0.12, label=f"trained (≤ {trained_segments} segments)")
    ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1, label="chance")
    save_accuracy_figure(fig, ax, path, title)


def save_accuracy_figure(fig, ax, path: Path, title: str, ylabel: str = "accuracy, %", legend_size=None) -> None:
    """The one style of every accuracy-against-length figure: log token axis, 0-100% accuracy, grid, legend."""
    ax.set_xscale("log")
    ax.set_ylim(0, 102)
    ax.set_xlabel("input length, content tokens (log)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=legend_size)
    save_figure(fig, path)


def plot_retention(report: dict, path: Path, title: str) -> None:
    """`rmt retention`'s figure: accuracy (left) and the share of inputs whose memory still holds the answer (right)
    against how long the fact was held, one line per bin of where the fact was; chance dashed."""
    from rmt_cli.retention import held_labels

    table = report["table"]
    columns = held_labels(table)
    with_twins = any(cell["in_memory"] is not None for row in table.values() for cell in row.values())
    panels = ("accuracy", "in_memory") if with_twins else ("accuracy",)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for before, row in table.items():
        for ax, value in zip(axes[0], panels, strict=True):
            points = [(x, 100 * row[label][value]) for x, label in enumerate(columns)
                      if label in row and row[label][value] is not None]
            if points:
                ax.plot([x for x, _ in points], [y for _, y in points], marker="o",
                        label=f"fact after {before} segments")
    axes[0][0].axhline(100 * report["chance"], color="grey", linestyle="--", linewidth=1, label="chance")
    axes[0][0].set_title(title)
    for ax, ylabel in zip(axes[0], ("accuracy, %", "answer still in memory, % of inputs"), strict=False):
        ax.set_ylim(0, 102)
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(len(columns)), columns)
        ax.set_xlabel("segments the fact was held")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if with_twins:
        axes[0][1].set_title("memory differs from the twin's (another answer)")
    save_figure(fig, path)
