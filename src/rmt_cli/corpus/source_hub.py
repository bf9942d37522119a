"""noise.source=hub (noise=pg19): documents streamed from a Hugging Face dataset, split as the dataset splits them."""

from __future__ import annotations

import itertools
from typing import Any

from rmt_cli.corpus.cache import Build
from rmt_cli.corpus.tokens import NoiseSplits, TokenCorpus, tokenize_documents
from rmt_cli.errors import RuntimeFailure, UsageError


class HubUnreachable(RuntimeFailure):
    """Streaming `dataset`'s `split` failed (`reason`: the first line of the error)."""

    def __init__(self, dataset: str, split: str, reason: str):
        self.dataset, self.split, self.reason = dataset, split, reason
        super().__init__(f"dataset hub unreachable, cannot stream {dataset} split {split!r} ({reason})")


class NoTextField(UsageError):
    """`dataset`'s rows have no `field` (they have `fields`)."""

    def __init__(self, dataset: str, field: str, fields: list[str]):
        self.dataset, self.field, self.fields = dataset, field, fields
        super().__init__(f"{dataset} has no field {field!r} (fields: {fields})")


def hub_noise(cfg: Any, tokenizer: Any) -> tuple[dict, Build]:
    """The cache key of the `noise` node's dataset and the function that streams and tokenises it."""
    key = {
        "dataset": cfg.dataset,
        "text_field": cfg.text_field,
        "splits": [cfg.train_split, cfg.eval_split],
        "max_documents": cfg.max_documents,
    }

    def build() -> NoiseSplits:
        parts = []
        for split in (cfg.train_split, cfg.eval_split):
            names, texts = _stream_hub_documents(cfg, split)
            tokens, starts = tokenize_documents(texts, tokenizer)
            parts.append(TokenCorpus(tokens, starts, tuple(names)))
        return NoiseSplits(*parts)

    return key, build


def _stream_hub_documents(cfg: Any, split: str) -> tuple[list[str], list[str]]:
    try:
        import datasets

        stream = datasets.load_dataset(cfg.dataset, split=split, streaming=True)
        rows = list(itertools.islice(stream, cfg.max_documents))
    except Exception as err:  # offline, unknown dataset, auth, network: all reported the same way
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise HubUnreachable(cfg.dataset, split, detail) from None
    if rows and cfg.text_field not in rows[0]:
        fields = sorted(rows[0])
        raise NoTextField(cfg.dataset, cfg.text_field, fields)
    names = [f"{cfg.dataset}/{split}/{i}" for i in range(len(rows))]
    return names, [row[cfg.text_field] for row in rows]
