"""`rmt attention`: where the memory is written, kept and read (the RMT paper's Figure 6).

A few test samples run through the engine one segment at a time with the backbone on eager attention, so every
layer returns its attention weights. Positions of a segment fall into groups,

    encoder:  [CLS] | memory ×m | [SEP] | content: facts, question (last segment), other tokens | [SEP]
    decoder:  memory ×m (read slots) | content: facts, question, question end, other tokens | memory write ×m

and the attention between groups is summarised for three segments of each sample: one that holds a fact (write),
one without facts between it and the question (keep) and the last one (read). The positions that play the paper's
parts are the ones whose outputs the engine uses: the writer is the memory (encoder) or the write slots (decoder),
whose last hidden states become the next memory; the reader is [CLS] (encoder) or the question's last token
(decoder: the answer is read there), and what it reads is the memory (a decoder's read slots). The JSON keys keep
the encoder's names (`write_memory_*`: the writer's attention, `read_cls_*`: the reader's). Next to it, how far each
segment moves the memory: the L2 distance between consecutive memory states over the norm of the earlier one.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.samples import PlacedFact, Sample, SampleFactory

CLS, MEMORY, WRITE, FACT, QUESTION, QUESTION_END, OTHER, SEP = (
    "[CLS]", "memory", "memory write", "fact", "question", "question end", "other", "[SEP]")
GROUPS = (CLS, MEMORY, WRITE, FACT, QUESTION, QUESTION_END, OTHER, SEP)
CONTENT = (FACT, QUESTION, QUESTION_END, OTHER)
WRITER = {"encoder": MEMORY, "decoder": WRITE}  # positions whose outputs become the next memory
READER = {"encoder": CLS, "decoder": QUESTION_END}  # the position the answer is read from
ROLES = ("write", "keep", "read")
DEFAULT_SEGMENTS = 4
TOKEN_PAD = 12  # content tokens shown on each side of the facts in the token-level map
TOKEN_WINDOW = 64  # at most this many content columns in the token-level map


# ---------------------------------------------------------------------------------------------
# Pure summaries: positions, groups, memory change.

def fact_segments(sample: Sample) -> list[int]:
    """Segments of a sample that hold at least one fact, in order."""
    return sorted({int(f.segment) for f in sample.facts})


def fact_spans(facts: Sequence[PlacedFact], content_length: int) -> list[tuple[int, int]]:
    """[start, end) content positions of the facts of one segment.

    SampleFactory.compose inserts each fact at its offset in the noise window, so a fact lands after the facts
    inserted before it: its content position is its offset plus the lengths of the earlier facts.
    """
    spans, shift = [], 0
    for fact in sorted(facts, key=lambda f: f.offset):
        start = int(fact.offset) + shift
        end = start + len(fact.tokens)
        shift += len(fact.tokens)
        if start < content_length:
            spans.append((start, min(end, content_length)))
    return spans


def position_groups(memory_size: int, content_length: int, facts: Sequence[PlacedFact] = (),
                    question_length: int = 0, layout: str = "encoder") -> list[str]:
    """The group of every position of `[CLS] mem×m [SEP] content [SEP]` (encoder) or `mem×m content mem×m`
    (decoder, whose last question token, where the answer is read, is the group QUESTION_END).

    facts: the PlacedFacts of this segment; question_length: tokens of the question at the end of the content
    (the last segment only).
    """
    content = [OTHER] * content_length
    for start, end in fact_spans(facts, content_length):
        content[start:end] = [FACT] * (end - start)
    if question_length:
        content[content_length - question_length:] = [QUESTION] * question_length
        if layout == "decoder":
            content[-1] = QUESTION_END
    if layout == "decoder":
        return [*[MEMORY] * memory_size, *content, *[WRITE] * memory_size]
    return [CLS, *[MEMORY] * memory_size, SEP, *content, SEP]


def positions_of(labels: Sequence[str], groups: Sequence[str]) -> np.ndarray:
    """Indices of the positions whose group is one of `groups`."""
    return np.flatnonzero(np.isin(np.asarray(labels), groups))


def group_attention(attn: np.ndarray, labels: Sequence[str], mode: str = "share") -> np.ndarray:
    """[len(GROUPS), len(GROUPS)] summary of an [L, L] attention map (rows: queries, columns: keys).

    mode "share": the fraction of its attention a query of the row group puts on the column group (rows sum to 1),
    averaged over the row group's queries. mode "per_token": the average weight of one (query, key) pair; this
    compares groups of different sizes fairly. Groups absent from `labels` are NaN.
    """
    attn = np.asarray(attn, dtype=np.float64)
    labels = np.asarray(labels)
    if attn.shape != (len(labels), len(labels)):
        raise ValueError(f"attention map {attn.shape} does not match {len(labels)} position labels")
    out = np.full((len(GROUPS), len(GROUPS)), np.nan)
    masks = [labels == g for g in GROUPS]
    for i, rows in enumerate(masks):
        if not rows.any():
            continue
        for j, cols in enumerate(masks):
            if not cols.any():
                continue
            block = attn[np.ix_(rows, cols)]
            out[i, j] = block.sum(axis=1).mean() if mode == "share" else block.mean()
    return out


def memory_change(memories: Sequence[np.ndarray]) -> list[float]:
    """||M_t+1 - M_t|| / ||M_t|| for consecutive memory states (Frobenius norms): one value per segment."""
    changes = []
    for before, after in zip(memories[:-1], memories[1:]):
        before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
        norm = np.linalg.norm(before)
        changes.append(float(np.linalg.norm(after - before) / max(norm, 1e-12)))
    return changes


def top_segments(changes: Sequence[float], k: int, start: int = 0) -> list[int]:
    """The k segments from `start` on that changed memory most, largest first."""
    order = np.argsort(-np.asarray(changes[start:], dtype=np.float64), kind="stable")[:k]
    return [int(i) + start for i in order]


def ranked_segments(changes: Sequence[float], facts: Sequence[int]) -> tuple[list[int], int]:
    """The segments that changed memory most, as many as the fact segments ranked (at least one), and that count.

    Segment 0 is left out when there are others: it replaces the learned initial memory (at the scale of token
    embeddings) by encoder outputs, a large change whatever it reads.
    """
    start = 1 if len(changes) > 1 else 0
    ranked_facts = sum(s >= start for s in facts)
    return top_segments(changes, max(ranked_facts, 1), start), ranked_facts


def pick_roles(sample: Sample) -> dict[str, Optional[int]]:
    """Segment of each role: write = first fact segment (before the last, if possible); keep = a fact-free
    segment before the last, after the write segment if possible; read = the last segment."""
    last = sample.n_segments - 1
    facts = fact_segments(sample)
    before_last = [s for s in facts if s != last]
    write = (before_last or facts or [None])[0]
    free = [s for s in range(last) if s not in facts]
    after = [s for s in free if write is not None and s > write]
    keep = (after or free or [None])[0]
    return {"write": write, "keep": keep, "read": last}


def select_attention(attentions: Sequence[torch.Tensor], layer: Optional[int], head: Optional[int]) -> np.ndarray:
    """[L, L] map of row 0 from per-layer [batch, heads, L, L] weights: one layer/head, or the mean over them."""
    stack = torch.stack([a[0].float() for a in attentions])  # [layers, heads, L, L]
    stack = stack[[layer]] if layer is not None else stack
    stack = stack[:, [head]] if head is not None else stack
    return stack.mean(dim=(0, 1)).cpu().numpy()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def check_range(name: str, value: Optional[int], count: int, what: str) -> None:
    if value is not None and not 0 <= value < count:
        raise UsageError(f"--{name} {value}: the backbone has {count} {what} (0-{count - 1}); "
                         f"leave --{name} out to average over all of them")


# ---------------------------------------------------------------------------------------------
# Capture.

@contextmanager
def eager_attention(backbone):
    """Switch the backbone to eager attention (the only kind that returns its weights) and back."""
    config = backbone.config
    previous = getattr(config, "_attn_implementation", None)

    def switch(implementation):
        setter = getattr(backbone, "set_attn_implementation", None)
        if setter is not None:
            try:
                setter(implementation)
                return
            except (ValueError, ImportError, AttributeError):
                pass
        config._attn_implementation = implementation

    switch("eager")
    try:
        yield
    finally:
        if previous and previous != "eager":
            switch(previous)


@dataclass
class SampleCapture:
    maps: list[np.ndarray]  # [L, L] per segment (selected layer/head, or averaged)
    memories: list[np.ndarray]  # [m, hidden]: the initial memory, then the memory after each segment
    tokens: list[np.ndarray]  # content token ids per segment
    labels: list[list[str]] = field(default_factory=list)  # position groups per segment


@torch.inference_mode()
def capture_sample(model, factory: SampleFactory, sample: Sample, layer: Optional[int] = None,
                   head: Optional[int] = None, autocast=nullcontext) -> SampleCapture:
    """Run one sample segment by segment through the engine (a RecurrentMemory), keeping attention maps and
    memory states. autocast: a context-manager factory, e.g. Experiment.autocast."""
    device = model.initial_memory.device
    was_training = model.training
    model.eval()
    memory = model.start_memory(1)
    capture = SampleCapture(maps=[], memories=[memory[0].float().cpu().numpy()], tokens=[])
    last = sample.n_segments - 1
    try:
        with eager_attention(model.backbone), autocast():
            for index in range(sample.n_segments):
                tokens = factory.segment(sample, index)
                batch = torch.from_numpy(np.asarray(tokens, dtype=np.int64))[None].to(device)
                memory, _, out = model.read_segment(memory, batch, output_attentions=True)
                if not out.attentions:
                    raise RuntimeFailure("the backbone returned no attention weights even with eager attention; "
                                         "`rmt attention` needs a backbone that supports output_attentions")
                capture.maps.append(select_attention(out.attentions, layer, head))
                capture.memories.append(memory[0].float().cpu().numpy())
                capture.tokens.append(np.asarray(tokens))
                facts = [f for f in sample.facts if f.segment == index]
                capture.labels.append(position_groups(model.memory_size, len(tokens), facts,
                                                      len(sample.question) if index == last else 0, model.layout))
    finally:
        model.train(was_training)
    return capture


# ---------------------------------------------------------------------------------------------
# Per-sample numbers and their summary.

def pair(matrix: np.ndarray, row: str, col: str) -> Optional[float]:
    value = matrix[GROUPS.index(row), GROUPS.index(col)]
    return None if math.isnan(value) else float(value)


def to_json(matrix: np.ndarray) -> list:
    return [[None if math.isnan(v) else round(float(v), 6) for v in row] for row in matrix]


def sample_report(index: int, sample: Sample, capture: SampleCapture, prediction: int, labels: Sequence[str],
                  layout: str = "encoder") -> dict:
    """prediction: the label index the model answered (-1: a generated answer that is no label)."""
    changes = memory_change(capture.memories)
    facts_at = fact_segments(sample)
    top, ranked_facts = ranked_segments(changes, facts_at)
    roles = {}
    for role, segment in pick_roles(sample).items():
        if segment is None:
            continue
        attn, groups = capture.maps[segment], capture.labels[segment]
        roles[role] = {"segment": segment, "share": group_attention(attn, groups, "share"),
                       "per_token": group_attention(attn, groups, "per_token")}
    write, read = roles.get("write"), roles["read"]
    writer, reader = WRITER[layout], READER[layout]
    return {
        "index": index, "label": labels[sample.label],
        "prediction": labels[prediction] if prediction >= 0 else "(no label)",
        "fact_segments": facts_at,
        "facts": [{"segment": seg, "start": start, "end": end}
                  for seg in facts_at
                  for start, end in fact_spans([f for f in sample.facts if f.segment == seg],
                                               len(capture.tokens[seg]))],
        "memory_change": [round(c, 6) for c in changes],
        "top_change_segments": top,
        "ranked_fact_segments": ranked_facts,
        "top_change_hold_facts": sum(s in facts_at for s in top),
        "roles": roles,
        "write_memory_to_fact": pair(write["per_token"], writer, FACT) if write else None,
        "write_memory_to_other": pair(write["per_token"], writer, OTHER) if write else None,
        "write_memory_share_fact": pair(write["share"], writer, FACT) if write else None,
        "read_cls_share_memory": pair(read["share"], reader, MEMORY),
        "read_cls_to_memory": pair(read["per_token"], reader, MEMORY),
        "read_cls_to_content": reader_to_content(capture.maps[-1], capture.labels[-1], reader),
    }


def reader_to_content(attn: np.ndarray, labels: Sequence[str], reader: str = CLS) -> float:
    """Average weight the reader gives one content token (facts, question and other tokens together; a decoder's
    reader, the question's last token, not counting itself)."""
    cols = positions_of(labels, (FACT, QUESTION, OTHER))
    return float(np.asarray(attn)[positions_of(labels, (reader,))][:, cols].mean())


def mean_matrix(reports: list[dict], role: str, mode: str) -> Optional[np.ndarray]:
    found = [r["roles"][role][mode] for r in reports if role in r["roles"]]
    if not found:
        return None
    stack = np.stack(found)
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(stack)).sum(axis=0)
        total = np.nansum(stack, axis=0)
        return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def mean_of(reports: list[dict], key: str) -> Optional[float]:
    values = [r[key] for r in reports if r[key] is not None]
    return float(np.mean(values)) if values else None


def summary_lines(reports: list[dict], n_segments: int, layout: str = "encoder") -> list[str]:
    writer = "memory rows" if layout == "encoder" else "write slots"
    reader = "[CLS]" if layout == "encoder" else "the question's last token"
    lines = []
    for r in reports[:3]:
        marks = "  ".join(f"{i}: {c:.3f}{'*' if i in r['fact_segments'] else ''}"
                          for i, c in enumerate(r["memory_change"]))
        lines.append(f"sample {r['index']}: facts in segment(s) {', '.join(map(str, r['fact_segments']))}; "
                     f"answer {r['label']}, predicted {r['prediction']}")
        lines.append(f"  memory change per segment (* = holds a fact): {marks}")
        top = r["top_change_segments"]
        after = " after segment 0" if n_segments > 1 else ""
        if r["ranked_fact_segments"]:
            lines.append(f"  changed memory most{after}: segment(s) {', '.join(map(str, top))} — "
                         f"{r['top_change_hold_facts']} of {len(top)} hold facts")
        else:
            lines.append(f"  changed memory most{after}: segment {top[0]} (no segment{after} holds a fact)")
    if len(reports) > 3:
        lines.append(f"... {len(reports) - 3} more samples in attention.json")
    if len(reports) > 1:
        ranked = [r for r in reports if r["ranked_fact_segments"]]
        hits = sum(r["top_change_hold_facts"] for r in ranked)
        total = sum(len(r["top_change_segments"]) for r in ranked)
        if total:
            lines.append(f"over {len(reports)} samples: {hits} of the {total} segments that changed memory most "
                         "hold facts")
    if n_segments > 1:
        lines.append("  (segment 0 is ranked apart: it replaces the learned initial memory, at token-embedding "
                     "scale, by backbone outputs)")
    to_fact, to_other = mean_of(reports, "write_memory_to_fact"), mean_of(reports, "write_memory_to_other")
    if to_fact is not None and to_other is not None:
        ratio = f" ({to_fact / to_other:.2f}×)" if to_other > 0 else ""
        written = sorted({r["roles"]["write"]["segment"] for r in reports if "write" in r["roles"]})
        lines.append(f"write (segment {', '.join(map(str, written))}): {writer} give {to_fact:.4f} per fact "
                     f"token vs {to_other:.4f} per other token{ratio}; "
                     f"{mean_of(reports, 'write_memory_share_fact'):.1%} of their attention on facts")
    else:
        lines.append("write: no sample holds a fact")
    share, per_memory = mean_of(reports, "read_cls_share_memory"), mean_of(reports, "read_cls_to_memory")
    per_content = mean_of(reports, "read_cls_to_content")
    lines.append(f"read (segment {n_segments - 1}): {reader} puts {share:.1%} of its attention on memory, "
                 f"{per_memory:.4f} per memory position vs {per_content:.4f} per content token")
    return lines


# ---------------------------------------------------------------------------------------------
# Plots.

def present(matrix: np.ndarray) -> list[int]:
    """Indices of the groups that have any value in the matrix."""
    return [i for i in range(len(GROUPS)) if not np.all(np.isnan(matrix[i])) or not np.all(np.isnan(matrix[:, i]))]


def plot_groups(matrices: dict, path: Path, title: str) -> None:
    """Share (top) and per-token (bottom) group maps for write, keep and read, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def token_window(labels: Sequence[str]) -> tuple[int, int]:
    """[start, end) content positions around the facts of a segment, at most TOKEN_WINDOW long."""
    content = [labels[i] for i in positions_of(labels, CONTENT)]
    facts = [i for i, g in enumerate(content) if g == FACT]
    if not facts:
        return 0, min(len(content), TOKEN_WINDOW)
    start = max(0, facts[0] - TOKEN_PAD)
    end = min(len(content), max(facts[-1] + 1 + TOKEN_PAD, start + 1))
    return start, min(end, start + TOKEN_WINDOW)


def plot_tokens(attn: np.ndarray, labels: Sequence[str], tokens: Sequence[str], writer: str,
                window: tuple[int, int], path: Path, title: str) -> None:
    """Full token-level map of one segment, and the writer's rows (memory, or a decoder's write slots) × content
    tokens around the facts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    for tick, group in zip(zoom.get_xticklabels(), labels[cols]):
        if group == FACT:
            tick.set_color("tab:red")
            tick.set_fontweight("bold")
    zoom.set_yticks(range(len(rows)), [f"mem {i}" for i in range(len(rows))], fontsize=7)
    zoom.set_title(f"{writer} rows × content tokens {window[0]}-{window[1] - 1} (facts in red)", fontsize=9)
    fig.colorbar(image, ax=zoom, fraction=0.03, pad=0.02)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory_change(reports: list[dict], path: Path, title: str) -> None:
    """Relative memory change per segment, one line per sample, fact segments starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The command.

def attention_from_config(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from rmt_cli.evaluate import load_trained, predict

    cfg, meta, folder, experiment = load_trained(cfg)
    segments = cfg.task.get("segments")
    n_segments = DEFAULT_SEGMENTS if segments is None else int(segments)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    backbone_config = experiment.model.backbone.config
    layers, heads = int(backbone_config.num_hidden_layers), int(backbone_config.num_attention_heads)
    layer = None if cfg.get("layer") is None else int(cfg.layer)
    head = None if cfg.get("head") is None else int(cfg.head)
    check_range("layer", layer, layers, "layers")
    check_range("head", head, heads, "attention heads")
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)

    factory = experiment.eval_data
    memory_size = experiment.model.memory_size
    samples = factory.sample_set("test", int(cfg.task.eval_seed), n_segments, int(cfg.samples))
    captures = [capture_sample(experiment.model, factory, s, layer, head, experiment.autocast) for s in samples]
    predictions = predict(experiment, factory, samples, batch_size=len(samples))
    labels = list(experiment.task.labels)
    layout = experiment.model.layout
    reports = [sample_report(i, s, c, int(p), labels, layout)
               for i, (s, c, p) in enumerate(zip(samples, captures, predictions))]

    which = (f"layer {layer}" if layer is not None else f"mean of {layers} layers") + ", " + \
            (f"head {head}" if head is not None else f"mean of {heads} heads")
    title = f"{cfg.task.name}, {n_segments} segments, {which}"
    means = {}
    for role in ROLES:
        share, per_token = mean_matrix(reports, role, "share"), mean_matrix(reports, role, "per_token")
        if share is None:
            continue
        segs = sorted({r["roles"][role]["segment"] for r in reports if role in r["roles"]})
        means[role] = {"share": share, "per_token": per_token, "segments": segs,
                       "samples": sum(role in r["roles"] for r in reports),
                       "segment_label": ", ".join(map(str, segs))}
    plot_groups(means, run_dir / "attention.png", title + (f", {len(reports)} samples" if len(reports) > 1 else ""))

    # Token-level map of the first sample's write segment (or its last segment when it holds no fact).
    first = reports[0]
    token_segment = first["roles"].get("write", first["roles"]["read"])["segment"]
    capture = captures[0]
    token_labels = capture.labels[token_segment]
    window = token_window(token_labels)
    decoded = experiment.tokenizer.convert_ids_to_tokens([int(t) for t in capture.tokens[token_segment]])
    plot_tokens(capture.maps[token_segment], token_labels, decoded, WRITER[layout], window,
                run_dir / "attention_tokens.png", f"sample 0, segment {token_segment} — {which}")
    plot_memory_change(reports, run_dir / "memory_change.png", f"memory change per segment — {cfg.task.name}")

    result = {
        "checkpoint": str(folder), "task": cfg.task.name, "segments": n_segments,
        "content_length": factory.content_length, "memory_size": memory_size,
        "layer": layer, "head": head, "layers": layers, "heads": heads, "groups": list(GROUPS),
        "layout": layout, "writer": WRITER[layout], "reader": READER[layout],
        "mean": {
            **{role: {"segments": m["segments"], "samples": m["samples"], "share": to_json(m["share"]),
                      "per_token": to_json(m["per_token"])} for role, m in means.items()},
            **{key: mean_of(reports, key) for key in ("write_memory_to_fact", "write_memory_to_other",
                                                      "write_memory_share_fact", "read_cls_share_memory",
                                                      "read_cls_to_memory", "read_cls_to_content")},
        },
        "samples": [{**{k: v for k, v in r.items() if k != "roles"},
                     "roles": {role: {"segment": e["segment"], "share": to_json(e["share"]),
                                      "per_token": to_json(e["per_token"])} for role, e in r["roles"].items()}}
                    for r in reports],
        "token_map": {
            "sample": 0, "segment": token_segment, "labels": token_labels,
            "tokens": decoded, "window": list(window),
            "attention": [[round(float(v), 6) for v in row] for row in capture.maps[token_segment]],
        },
    }
    (run_dir / "attention.json").write_text(json.dumps(result, indent=1))

    print(f"attention: {cfg.task.name}, {plural(len(samples), 'test sample')} of {plural(n_segments, 'segment')} "
          f"({factory.content_length} content tokens each), {which} — {folder}")
    for line in summary_lines(reports, n_segments, layout):
        print(line)
    print(f"wrote attention.png, attention_tokens.png, memory_change.png and attention.json to {run_dir}")
