"""The token cache: one .npz per (corpus, split assignment, tokenizer), so a corpus is tokenised once.

The file name holds a digest of the key: everything the splits depend on. Changing what goes into the key, or how it
is hashed, names every existing file anew, and users' caches are rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rmt_cli.atomic import atomic_file
from rmt_cli.corpus.sizes import check_sizes
from rmt_cli.corpus.tokens import NoiseSplits, TokenCorpus
from rmt_cli.errors import RuntimeFailure

_CACHE_FORMAT = 1  # bump when sentence splitting or the cache layout changes

# Builds a source's splits when the cache misses.
Build = Callable[[], NoiseSplits]


def documents_key(train: list[tuple[str, Path]], eval_: list[tuple[str, Path]]) -> dict:
    def describe(docs: list[tuple[str, Path]]) -> list[list]:
        return [[name, (st := path.stat()).st_size, st.st_mtime_ns] for name, path in docs]

    return {"train": describe(train), "eval": describe(eval_)}


def generated_from(z, split: str) -> int | None:
    """A cached split's offset of generated text; None for one without it."""
    key = f"{split}_generated_from"
    return int(z[key]) if key in z.files else None


def cached(key: dict, tokenizer: Any, cache_dir: Path, build: Build) -> NoiseSplits:
    full_key = {**key, "tokenizer": [str(tokenizer.name_or_path), len(tokenizer)], "format": _CACHE_FORMAT}
    digest = hashlib.sha256(json.dumps(full_key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / f"{key['source']}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return NoiseSplits(*(
                    TokenCorpus(z[f"{s}_tokens"], z[f"{s}_starts"], tuple(z[f"{s}_documents"].tolist()),
                                generated_from(z, s))
                    for s in ("train", "eval")
                ))
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable cache file: rebuild and overwrite it

    splits = build()
    check_sizes(splits, key["source"])
    arrays = {}
    for s, corpus in (("train", splits.train), ("eval", splits.eval)):
        arrays[f"{s}_tokens"] = corpus.tokens
        arrays[f"{s}_starts"] = corpus.sentence_starts
        arrays[f"{s}_documents"] = np.array(corpus.documents, dtype=str)
        if corpus.generated_from is not None:
            arrays[f"{s}_generated_from"] = np.int64(corpus.generated_from)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs: **arrays also meets allow_pickle: bool
    except OSError as err:
        raise RuntimeFailure(
            f"cannot write the token cache in {cache_dir} ({err.strerror or err}); "
            "set RMT_CACHE_DIR to a writable directory"
        ) from None
    return splits
