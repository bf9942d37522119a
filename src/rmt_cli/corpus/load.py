"""load_noise: the `noise` config node's corpus as token arrays, through the token cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rmt_cli.corpus.cache import Build, cached
from rmt_cli.corpus.generated import GENERATOR_FORMAT, with_generated
from rmt_cli.corpus.sizes import check_sizes
from rmt_cli.corpus.source_austen import austen_noise
from rmt_cli.corpus.source_files import files_noise
from rmt_cli.corpus.source_hub import hub_noise
from rmt_cli.corpus.source_synthetic import synthetic_noise
from rmt_cli.corpus.tokens import NoiseSplits
from rmt_cli.errors import UsageError

SOURCES = ("austen", "files", "synthetic", "hub")


class UnknownNoiseSource(UsageError):
    def __init__(self, source):
        self.source = source
        super().__init__(f"unknown noise source {source!r}; the sources are {', '.join(SOURCES)}")


def load_noise(cfg: Any, tokenizer: Any, cache_dir: Path | None = None) -> NoiseSplits:
    """Load the `noise` config node's corpus as token arrays, from the cache when possible."""
    source = cfg.source
    if source == "synthetic":
        splits = synthetic_noise(cfg, tokenizer)
        check_sizes(splits, source)
        return splits
    if cache_dir is None:
        cache_dir = Path(os.environ.get("RMT_CACHE_DIR") or Path.home() / ".cache" / "rmt" / "tokens")
    key, build = cached_source(cfg, tokenizer)
    n_generated = cfg.get("generated_training_tokens", 0)
    if n_generated:
        key, build = with_generated_training(key, build, n_generated, cfg.get("generated_context", 3))
    return cached({"source": source, **key}, tokenizer, Path(cache_dir).expanduser(), build)


def with_generated_training(key: dict, build: Build, n_tokens: int, context: int) -> tuple[dict, Build]:
    """A source's key and build with `n_tokens` of training noise generated from its training split added."""
    def build_more() -> NoiseSplits:
        splits = build()
        return NoiseSplits(with_generated(splits.train, n_tokens, context), splits.eval)

    return {**key, "generated": {"tokens": n_tokens, "context": context, "format": GENERATOR_FORMAT}}, build_more


def cached_source(cfg: Any, tokenizer: Any) -> tuple[dict, Build]:
    """A cached source's key (everything its splits depend on, besides the tokenizer) and the function that builds
    them when the cache misses. Finding the key reads no text, but finds the source's files: a missing or unusable
    one raises here."""
    source = cfg.source
    if source == "austen":
        return austen_noise(cfg, tokenizer)
    if source == "files":
        return files_noise(cfg, tokenizer)
    if source == "hub":
        return hub_noise(cfg, tokenizer)
    raise UnknownNoiseSource(source)


def check_noise_files(cfg: Any) -> None:
    """Raise what load_noise would for the `noise` node's files (missing, not downloaded, a held-out novel among the
    extra training noise), reading none of them: a check before runs start."""
    if cfg.source != "synthetic":
        cached_source(cfg, tokenizer=None)
