"""Forward FLOPs of full attention and of RMT, counted analytically from a model's shape.

Counting follows Hoffmann et al. 2022 (Chinchilla), appendix F. For one forward over `seq` tokens:

    embeddings        2 * seq * vocab * d
    per layer:
      KQV projections 2 * 3 * seq * d * (key_size * heads)
      key @ query     2 * seq * seq * (key_size * heads)
      softmax         3 * heads * seq * seq
      softmax @ value 2 * seq * seq * (key_size * heads)
      final linear    2 * seq * (key_size * heads) * d
      dense block     2 * seq * (d * ffn + d * ffn)
    final logits      2 * seq * d * vocab

    forward = embeddings + layers * (attention + dense) + logits

Full attention on N tokens is one forward with seq = N. RMT on N tokens is ceil(N / content) forwards with
seq = segment_length, where content = segment_length - 2 * memory_size (decoders: mem content mem, memory read at
the start and written at the end) or segment_length - memory_size - 3 (encoders: [CLS] mem [SEP] content [SEP]), the
layouts of `rmt_cli.engine`. A last partial segment is padded to a full one. Conventions (which of the terms are
counted) are listed in CONVENTIONS; docs/flops.md explains the choice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rmt_cli.errors import UsageError
from rmt_cli.flops.shapes import OPT_FAMILY, ModelShape, segment_content, validate

BASE_TOKENS = 512  # the "512-token cost" every multiple is relative to (the paper's Figure 3)
DEFAULT_SEGMENT_LENGTH = 512
PAPER_TOKENS = 2_048_000
PAPER_RATIOS = {"opt-125m": 295.0, "opt-175b": 29.0}  # "x295" and "x29" fewer FLOPs than full attention


@dataclass(frozen=True)
class Convention:
    """Which of the Chinchilla terms a count includes."""

    name: str
    embeddings: bool  # the embedding "matmul" 2 * seq * vocab * d (in practice an index lookup)
    softmax: bool  # 3 * heads * seq * seq
    logits: str  # "always": one vocabulary projection; "lm_head": only if the model has one; "never"
    description: str


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("paper", embeddings=False, softmax=True, logits="always",
                   description="Chinchilla terms with one vocabulary projection (the logits), no embedding term: "
                               "reproduces the paper's x295 / x29"),
        Convention("chinchilla", embeddings=True, softmax=True, logits="always",
                   description="all Chinchilla appendix F terms (embeddings and logits)"),
        Convention("layers", embeddings=False, softmax=True, logits="never",
                   description="transformer layers only, no vocabulary terms"),
        Convention("matmul", embeddings=False, softmax=False, logits="lm_head",
                   description="matrix multiplications only, as torch.utils.flop_counter.FlopCounterMode counts"),
    )
}


def convention(name: str | None) -> Convention:
    key = (name or "paper").strip().lower()
    if key not in CONVENTIONS:
        raise UsageError(f"--convention must be one of {', '.join(CONVENTIONS)}, got '{name}'")
    return CONVENTIONS[key]


def forward_terms(shape: ModelShape, seq: int, conv: Convention | str = "paper") -> dict[str, int]:
    """FLOPs of one forward over `seq` tokens (batch 1), term by term (layer terms already times `layers`)."""
    conv = convention(conv) if isinstance(conv, str) else conv
    d, L = shape.d_model, shape.layers
    q_width = shape.key_size * shape.heads  # key_size * heads
    kv_width = shape.key_size * (shape.kv_heads or shape.heads)
    width = shape.embed_proj or d  # dimension of the vocabulary projections
    matmul_only = conv.name == "matmul"
    terms = {
        "embeddings": 2 * seq * shape.vocab * width if conv.embeddings else 0,
        "kqv": L * 2 * seq * d * (q_width + 2 * kv_width),  # = 2 * 3 * seq * d * (key_size * heads)
        "logits_qk": L * 2 * seq * seq * q_width,
        "softmax": L * 3 * shape.heads * seq * seq if conv.softmax else 0,
        "softmax_v": L * 2 * seq * seq * q_width,
        "attn_out": L * 2 * seq * q_width * d,
        "dense": L * 2 * seq * shape.ffn_matrices * d * shape.ffn,
        "vocab_logits": 0,
        # Real matmuls outside the Chinchilla table, present only in some architectures.
        "embed_proj": 2 * 2 * seq * width * d if shape.embed_proj else 0,  # OPT project_in + project_out
        "pooler": 2 * d * d if (matmul_only and shape.pooler) else 0,  # BertModel pooler on [CLS]
    }
    if conv.logits == "always" or (conv.logits == "lm_head" and shape.lm_head):
        terms["vocab_logits"] = 2 * seq * width * shape.vocab
    return terms


def forward_flops(shape: ModelShape, seq: int, conv: Convention | str = "paper") -> int:
    return sum(forward_terms(shape, seq, conv).values())


def segment_count(shape: ModelShape, tokens: int, segment_length: int, memory_size: int) -> int:
    return math.ceil(tokens / segment_content(shape, segment_length, memory_size))


def full_attention_flops(shape: ModelShape, tokens: int, conv: Convention | str = "paper") -> int:
    """One forward over all `tokens` (attention is quadratic in `tokens`)."""
    return forward_flops(shape, tokens, conv)


def rmt_flops(shape: ModelShape, tokens: int, segment_length: int = DEFAULT_SEGMENT_LENGTH, memory_size: int = 0,
              conv: Convention | str = "paper", head_labels: int = 0) -> int:
    """ceil(tokens / content) forwards over one segment each; plus a classification head on the last segment."""
    segments = segment_count(shape, tokens, segment_length, memory_size)
    return segments * forward_flops(shape, segment_length, conv) + 2 * shape.embed_width * head_labels


def compare(shapes: Sequence[ModelShape], tokens: Sequence[int], segment_length: int = DEFAULT_SEGMENT_LENGTH,
            memory_size: int = 0, conv: Convention | str = "paper") -> list[dict]:
    """One row per (model, length): full attention vs RMT, their ratio and multiples of the 512-token cost."""
    conv = convention(conv) if isinstance(conv, str) else conv
    validate(shapes, tokens, segment_length, memory_size)
    rows = []
    for shape in shapes:
        base = forward_flops(shape, BASE_TOKENS, conv)
        for n in tokens:
            full = full_attention_flops(shape, n, conv)
            rmt = rmt_flops(shape, n, segment_length, memory_size, conv)
            rows.append({
                "model": shape.name,
                "tokens": n,
                "segment_length": segment_length,
                "memory_size": memory_size,
                "segments": segment_count(shape, n, segment_length, memory_size),
                "full_flops": full,
                "rmt_flops": rmt,
                "ratio": full / rmt,
                "full_multiple": full / base,
                "rmt_multiple": rmt / base,
                "convention": conv.name,
            })
    return rows


def paper_check(tokens: int = PAPER_TOKENS, segment_length: int = DEFAULT_SEGMENT_LENGTH) -> list[dict]:
    """The headline ratios under every convention, next to the paper's x295 (OPT-125M) and x29 (OPT-175B)."""
    rows = []
    for conv in ("paper", "chinchilla", "layers", "matmul"):
        for name, target in PAPER_RATIOS.items():
            shape = OPT_FAMILY[name]
            ratio = full_attention_flops(shape, tokens, conv) / rmt_flops(shape, tokens, segment_length, 0, conv)
            rows.append({"convention": conv, "model": name, "tokens": tokens, "ratio": ratio, "paper": target,
                         "deviation": ratio / target - 1})
    return rows
