"""The figures of `rmt attention`: group maps per role (attention.png), one segment token by token
(attention_tokens.png) and the memory change per segment (memory_change.png)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rmt_cli.attention.groups import CONTENT, FACT, GROUPS, WRITER, positions_of
from rmt_cli.attention.report import Setting, TokenMap
from rmt_cli.attention.segments import ROLES
from rmt_cli.plots import plt, save_figure


def write_figures(folder: Path, setting: Setting, means: dict[str, dict], reports: list[dict],
                  tokens: TokenMap) -> None:
    """The three figures of a run, into `folder`."""
    title = f"{setting.task}, {setting.segments} segments, {setting.which}"
    plot_groups(means, folder / "attention.png", title + (f", {len(reports)} samples" if len(reports) > 1 else ""))
    plot_tokens(tokens.attention, tokens.labels, tokens.tokens, WRITER[setting.layout], tokens.window,
                folder / "attention_tokens.png", f"sample {tokens.sample}, segment {tokens.segment} — {setting.which}")
    plot_memory_change(reports, folder / "memory_change.png", f"memory change per segment — {setting.task}")


def present(matrix: np.ndarray) -> list[int]:
    """Indices of the groups that have any value in the matrix."""
    return [i for i in range(len(GROUPS)) if not np.all(np.isnan(matrix[i])) or not np.all(np.isnan(matrix[:, i]))]


def plot_groups(matrices: dict, path: Path, title: str) -> None:
    """Share (top) and per-token (bottom) group maps for write, keep and read, side by side."""
    roles = [role for role in ROLES if matrices.get(role) is not None]
    fig, axes = plt.subplots(2, len(roles), figsize=(4.4 * len(roles), 8.2), squeeze=False)
    for col, role in enumerate(roles):
        entry = matrices[role]
        for row, mode in enumerate(("share", "per_token")):
            ax, matrix = axes[row, col], entry[mode]
            keep = present(matrix)
            shown = matrix[np.ix_(keep, keep)]
            image = ax.imshow(np.nan_to_num(shown), cmap="viridis", vmin=0)
            names = [GROUPS[i] for i in keep]
            ax.set_xticks(range(len(keep)), names, rotation=45, ha="right")
            ax.set_yticks(range(len(keep)), names)
            top = np.nanmax(shown) if np.isfinite(shown).any() else 1.0
            for i in range(len(keep)):
                for j in range(len(keep)):
                    if not math.isnan(shown[i, j]):
                        ax.text(j, i, f"{shown[i, j]:.2f}" if mode == "share" else f"{shown[i, j]:.3f}",
                                ha="center", va="center", fontsize=7,
                                color="black" if shown[i, j] > 0.6 * top else "white")
            what = "share of attention" if mode == "share" else "attention per key token"
            ax.set_title(f"{role} (segment {entry['segment_label']}): {what}", fontsize=9)
            ax.set_xlabel("key (attended to)")
            ax.set_ylabel("query")
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    save_figure(fig, path, dpi=110)


def plot_tokens(attn: np.ndarray, labels: Sequence[str], tokens: Sequence[str], writer: str,
                window: tuple[int, int], path: Path, title: str) -> None:
    """Full token-level map of one segment, and the writer's rows (memory, or a decoder's write slots) × content
    tokens around the facts."""
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [1, 1.5]})
    full.imshow(attn, cmap="viridis", vmin=0, vmax=np.quantile(attn, 0.99) or None)
    boundaries, names, previous = [], [], None
    for i, group in enumerate(labels):
        if group != previous:
            boundaries.append(i)
            names.append(group)
            previous = group
    for b in boundaries[1:]:
        full.axhline(b - 0.5, color="white", linewidth=0.4)
        full.axvline(b - 0.5, color="white", linewidth=0.4)
    full.set_xticks(boundaries, names, rotation=90, fontsize=6)
    full.set_yticks(boundaries, names, fontsize=6)
    full.set_title("all positions (query rows, key columns)", fontsize=9)

    offset = int(positions_of(labels, CONTENT)[0])
    cols = slice(offset + window[0], offset + window[1])
    rows = positions_of(labels, (writer,))
    block = attn[rows, cols]
    image = zoom.imshow(block, cmap="viridis", aspect="auto")  # own colour range: differences show
    zoom.set_xticks(range(window[1] - window[0]), tokens[window[0]:window[1]], rotation=90, fontsize=7)
    for tick, group in zip(zoom.get_xticklabels(), labels[cols], strict=False):
        if group == FACT:
            tick.set_color("tab:red")
            tick.set_fontweight("bold")
    zoom.set_yticks(range(len(rows)), [f"mem {i}" for i in range(len(rows))], fontsize=7)
    zoom.set_title(f"{writer} rows × content tokens {window[0]}-{window[1] - 1} (facts in red)", fontsize=9)
    fig.colorbar(image, ax=zoom, fraction=0.03, pad=0.02)
    fig.suptitle(title)
    save_figure(fig, path, dpi=110)


def plot_memory_change(reports: list[dict], path: Path, title: str) -> None:
    """Relative memory change per segment, one line per sample, fact segments starred."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, r in enumerate(reports[:10]):
        changes = r["memory_change"]
        line, = ax.plot(range(len(changes)), changes, marker="o", markersize=3, alpha=0.8,
                        label=f"sample {r['index']}")
        facts = [s for s in r["fact_segments"] if s < len(changes)]
        ax.scatter(facts, [changes[s] for s in facts], marker="*", s=160, color=line.get_color(),
                   edgecolor="black", zorder=3, label="fact segment" if k == 0 else None)
    if len(reports) == 1:
        for s in reports[0]["fact_segments"]:
            ax.axvspan(s - 0.4, s + 0.4, color="tab:red", alpha=0.1)
    n = len(reports[0]["memory_change"])
    values = [c for r in reports for c in r["memory_change"] if c > 0]
    if values and max(values) > 20 * min(values):
        ax.set_yscale("log")  # segment 0 replaces the initial memory and often dwarfs the rest
    else:
        ax.set_ylim(bottom=0)
    ax.set_xticks(range(n))
    ax.set_xlabel("segment")
    ax.set_ylabel("‖M_after − M_before‖ / ‖M_before‖")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
