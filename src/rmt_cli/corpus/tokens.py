"""Token corpora: a split's documents as one token array with the offsets where sentences start."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rmt_cli.corpus.sentences import split_sentences

_BATCH_SENTENCES = 8192


@dataclass(frozen=True)
class TokenCorpus:
    tokens: np.ndarray  # int32, the split's documents' tokens concatenated
    sentence_starts: np.ndarray  # int64, sorted offsets into `tokens` where a sentence begins (0 included)
    documents: tuple[str, ...]  # names of the documents in this split
    generated_from: int | None = None  # offset where text generated from the rest begins (corpus/generated.py)

    def window_starts(self, length: int) -> np.ndarray:
        """Sentence starts s with s + length <= len(tokens): where a window of `length` tokens fits."""
        last = len(self.tokens) - length
        return self.sentence_starts[: np.searchsorted(self.sentence_starts, last, side="right")]

    def describe(self, names_up_to: int = 6) -> str:
        """How much text the split holds, e.g. '2 documents (northangerabbey, persuasion), 312,526 tokens'; the
        names (file stems) only when there are at most `names_up_to`."""
        names = [Path(name).stem for name in self.documents]
        listed = f" ({', '.join(names)})" if len(names) <= names_up_to else ""
        return f"{len(names)} document{'s' * (len(names) != 1)}{listed}, {len(self.tokens):,} tokens"


@dataclass(frozen=True)
class NoiseSplits:
    train: TokenCorpus
    eval: TokenCorpus  # validation and test sets draw from these documents (with different seeds)


def tokenize_documents(texts: list[str], tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """All sentences of all texts, tokenised and concatenated: (tokens int32, sentence_starts int64)."""
    sentences = [s for text in texts for s in split_sentences(text)]
    ids: list[list[int]] = []
    for i in range(0, len(sentences), _BATCH_SENTENCES):
        # verbose=False: long sentences are fine here, they are never fed to the model whole.
        batch = tokenizer(sentences[i : i + _BATCH_SENTENCES], add_special_tokens=False, verbose=False)
        ids += [x for x in batch["input_ids"] if x]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if ids else np.zeros(0, np.int64)
    return tokens, starts
