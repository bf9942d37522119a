"""The size check every noise corpus passes: each split needs enough tokens to cut varied samples from."""

from __future__ import annotations

from rmt_cli.corpus.tokens import NoiseSplits
from rmt_cli.errors import RuntimeFailure

MIN_SPLIT_TOKENS = 10_000


class CorpusTooSmall(RuntimeFailure):
    """The `source` corpus has no text (`split` None), or its `split` has `tokens` tokens, fewer than
    MIN_SPLIT_TOKENS."""

    def __init__(self, source: str, split: str | None = None, tokens: int = 0):
        self.source, self.split, self.tokens = source, split, tokens
        super().__init__(f"the {source} noise corpus contains no text" if split is None else
                         f"the {split} split of the {source} noise corpus has only {tokens:,} tokens "
                         f"(need {MIN_SPLIT_TOKENS:,})")


def check_sizes(splits: NoiseSplits, source: str) -> None:
    if len(splits.train.tokens) + len(splits.eval.tokens) == 0:
        raise CorpusTooSmall(source)
    for split, corpus in (("train", splits.train), ("eval", splits.eval)):
        if len(corpus.tokens) < MIN_SPLIT_TOKENS:
            raise CorpusTooSmall(source, split, len(corpus.tokens))
