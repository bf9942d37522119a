"""Positions of a segment in groups, and attention summarised between groups.

    encoder:  [CLS] | memory ×m | [SEP] | content: facts, question (last segment), other tokens | [SEP]
    decoder:  memory ×m (read slots) | content: facts, question, question end, other tokens | memory write ×m

The positions that play the paper's parts are the ones whose outputs the engine uses: the writer is the memory
(encoder) or the write slots (decoder), whose last hidden states become the next memory; the reader is [CLS]
(encoder) or the question's last token (decoder: the answer is read there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rmt_cli.samples import PlacedFact

CLS, MEMORY, WRITE, FACT, QUESTION, QUESTION_END, OTHER, SEP = (
    "[CLS]", "memory", "memory write", "fact", "question", "question end", "other", "[SEP]")
GROUPS = (CLS, MEMORY, WRITE, FACT, QUESTION, QUESTION_END, OTHER, SEP)
CONTENT = (FACT, QUESTION, QUESTION_END, OTHER)
WRITER = {"encoder": MEMORY, "decoder": WRITE}  # positions whose outputs become the next memory
READER = {"encoder": CLS, "decoder": QUESTION_END}  # the position the answer is read from
TOKEN_PAD = 12  # content tokens shown on each side of the facts in the token-level map
TOKEN_WINDOW = 64  # at most this many content columns in the token-level map


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
    label_array = np.asarray(labels)
    if attn.shape != (len(labels), len(labels)):
        raise ValueError(f"attention map {attn.shape} does not match {len(labels)} position labels")
    out = np.full((len(GROUPS), len(GROUPS)), np.nan)
    masks = [label_array == g for g in GROUPS]
    for i, rows in enumerate(masks):
        if not rows.any():
            continue
        for j, cols in enumerate(masks):
            if not cols.any():
                continue
            block = attn[np.ix_(rows, cols)]
            out[i, j] = block.sum(axis=1).mean() if mode == "share" else block.mean()
    return out


def token_window(labels: Sequence[str]) -> tuple[int, int]:
    """[start, end) content positions around the facts of a segment, at most TOKEN_WINDOW long."""
    content = [labels[i] for i in positions_of(labels, CONTENT)]
    facts = [i for i, g in enumerate(content) if g == FACT]
    if not facts:
        return 0, min(len(content), TOKEN_WINDOW)
    start = max(0, facts[0] - TOKEN_PAD)
    end = min(len(content), max(facts[-1] + 1 + TOKEN_PAD, start + 1))
    return start, min(end, start + TOKEN_WINDOW)
