"""The numbers of `rmt attention`: one report per sample, their means, attention.json and the printed summary.

For three segments of each sample, one that holds a fact (write), one without facts between it and the question
(keep) and the last one (read), the attention between position groups is summarised. The JSON keys keep the
encoder's names (`write_memory_*`: the writer's attention, `read_cls_*`: the reader's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmt_cli.attention.capture import SampleCapture
from rmt_cli.attention.groups import (
    CLS,
    FACT,
    GROUPS,
    MEMORY,
    OTHER,
    QUESTION,
    READER,
    WRITER,
    fact_spans,
    group_attention,
    positions_of,
    token_window,
)
from rmt_cli.attention.segments import (
    ROLES,
    fact_segments,
    memory_change,
    pick_roles,
    ranked_segments,
)
from rmt_cli.samples import Sample

# Per-sample numbers whose mean over the samples attention.json reports.
MEAN_KEYS = ("write_memory_to_fact", "write_memory_to_other", "write_memory_share_fact", "read_cls_share_memory",
             "read_cls_to_memory", "read_cls_to_content")


@dataclass(frozen=True)
class Setting:
    """What one `rmt attention` run looked at."""

    checkpoint: str
    task: str
    segments: int
    content_length: int
    memory_size: int
    layer: int | None  # None: the mean over all layers
    head: int | None  # None: the mean over all heads
    layers: int
    heads: int
    layout: str

    @property
    def which(self) -> str:
        """The layer and head the maps show, e.g. "layer 1, mean of 12 heads"."""
        layer = f"layer {self.layer}" if self.layer is not None else f"mean of {self.layers} layers"
        head = f"head {self.head}" if self.head is not None else f"mean of {self.heads} heads"
        return f"{layer}, {head}"


@dataclass(frozen=True)
class TokenMap:
    """The token-level attention of one segment of one sample (attention_tokens.png)."""

    sample: int
    segment: int
    labels: list[str]  # position groups
    tokens: list[str]  # the content tokens, decoded
    window: tuple[int, int]  # [start, end) content positions shown next to the full map
    attention: np.ndarray  # [L, L]


def pair(matrix: np.ndarray, row: str, col: str) -> float | None:
    value = matrix[GROUPS.index(row), GROUPS.index(col)]
    return None if math.isnan(value) else float(value)


def matrix_json(matrix: np.ndarray) -> list:
    """A group matrix for JSON: NaN (a group not present) as null, 6 decimals."""
    return [[None if math.isnan(v) else round(float(v), 6) for v in row] for row in matrix]


def sample_report(index: int, sample: Sample, capture: SampleCapture, prediction: int, labels: Sequence[str],
                  layout: str = "encoder") -> dict:
    """prediction: the label index the model answered (-1: a generated answer that is no label)."""
    changes = memory_change(capture.memories)
    facts_at = fact_segments(sample)
    top, ranked_facts = ranked_segments(changes, facts_at)
    roles: dict[str, dict[str, Any]] = {}
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


def mean_matrix(reports: list[dict], role: str, mode: str) -> np.ndarray | None:
    found = [r["roles"][role][mode] for r in reports if role in r["roles"]]
    if not found:
        return None
    stack = np.stack(found)
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(stack)).sum(axis=0)
        total = np.nansum(stack, axis=0)
        return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def mean_of(reports: list[dict], key: str) -> float | None:
    values = [r[key] for r in reports if r[key] is not None]
    return float(np.mean(values)) if values else None


def role_means(reports: list[dict]) -> dict[str, dict]:
    """Per role that any sample has: its group matrices averaged over the samples, and the segments they come from."""
    means = {}
    for role in ROLES:
        share, per_token = mean_matrix(reports, role, "share"), mean_matrix(reports, role, "per_token")
        if share is None:
            continue
        segments = sorted({r["roles"][role]["segment"] for r in reports if role in r["roles"]})
        means[role] = {"share": share, "per_token": per_token, "segments": segments,
                       "samples": sum(role in r["roles"] for r in reports),
                       "segment_label": ", ".join(map(str, segments))}
    return means


def token_map(report: dict, capture: SampleCapture, tokenizer) -> TokenMap:
    """The token-level map of a sample's write segment, or of its last segment when it holds no fact."""
    segment = report["roles"].get("write", report["roles"]["read"])["segment"]
    labels = capture.labels[segment]
    return TokenMap(sample=report["index"], segment=segment, labels=labels,
                    tokens=tokenizer.convert_ids_to_tokens([int(t) for t in capture.tokens[segment]]),
                    window=token_window(labels), attention=capture.maps[segment])


def attention_json(setting: Setting, means: dict[str, dict], reports: list[dict], tokens: TokenMap) -> dict:
    """The content of attention.json."""
    return {
        "checkpoint": setting.checkpoint, "task": setting.task, "segments": setting.segments,
        "content_length": setting.content_length, "memory_size": setting.memory_size,
        "layer": setting.layer, "head": setting.head, "layers": setting.layers, "heads": setting.heads,
        "groups": list(GROUPS), "layout": setting.layout, "writer": WRITER[setting.layout],
        "reader": READER[setting.layout],
        "mean": {
            **{role: {"segments": m["segments"], "samples": m["samples"], "share": matrix_json(m["share"]),
                      "per_token": matrix_json(m["per_token"])} for role, m in means.items()},
            **{key: mean_of(reports, key) for key in MEAN_KEYS},
        },
        "samples": [{**{k: v for k, v in r.items() if k != "roles"},
                     "roles": {role: {"segment": e["segment"], "share": matrix_json(e["share"]),
                                      "per_token": matrix_json(e["per_token"])} for role, e in r["roles"].items()}}
                    for r in reports],
        "token_map": {
            "sample": tokens.sample, "segment": tokens.segment, "labels": tokens.labels,
            "tokens": tokens.tokens, "window": list(tokens.window),
            "attention": [[round(float(v), 6) for v in row] for row in tokens.attention],
        },
    }


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def headline(setting: Setting, samples: int) -> str:
    """The first printed line: what was analysed, and from which checkpoint."""
    return (f"attention: {setting.task}, {plural(samples, 'test sample')} of {plural(setting.segments, 'segment')} "
            f"({setting.content_length} content tokens each), {setting.which} — {setting.checkpoint}")


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
