"""noise=synthetic: random sentences of the tokenizer's plain words, generated from a seed (no files, not cached)."""

from __future__ import annotations

from typing import Any

import numpy as np

from rmt_cli.corpus.tokens import NoiseSplits, TokenCorpus
from rmt_cli.errors import RuntimeFailure


class NoPlainWords(RuntimeFailure):
    def __init__(self):
        super().__init__("the tokenizer has no plain lowercase word tokens for synthetic noise")


def synthetic_noise(cfg: Any, tokenizer: Any) -> NoiseSplits:
    special = set(tokenizer.all_special_tokens)
    # Plain lowercase whole words; "##" continuation pieces fail isalpha(). BPE/SentencePiece
    # word-start markers are stripped first.
    words = np.array(
        sorted(i for t, i in tokenizer.get_vocab().items() if t not in special and _is_plain_word(t.lstrip("Ġ▁"))),
        dtype=np.int32,
    )
    if len(words) == 0:
        raise NoPlainWords()
    period = tokenizer(".", add_special_tokens=False)["input_ids"][-1]
    n, seed = cfg.tokens, cfg.seed
    train = _random_sentences(words, period, n, np.random.default_rng([seed, 0]))
    eval_ = _random_sentences(words, period, n, np.random.default_rng([seed, 1]))
    return NoiseSplits(
        TokenCorpus(*train, (f"synthetic(seed={seed}, train)",)),
        TokenCorpus(*eval_, (f"synthetic(seed={seed}, eval)",)),
    )


def _is_plain_word(token: str) -> bool:
    return token.isascii() and token.isalpha() and token.islower()


def _random_sentences(
    words: np.ndarray, period: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """At least n tokens of whole sentences, each 8-24 tokens long and ending with a period."""
    ends = np.cumsum(rng.integers(8, 25, size=n // 8 + 1))
    ends = ends[: np.searchsorted(ends, n) + 1]
    tokens = rng.choice(words, size=int(ends[-1]))
    tokens[ends - 1] = period
    return tokens, np.concatenate([[0], ends[:-1]]).astype(np.int64)
