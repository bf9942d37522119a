"""Text documents on disk, as the austen and files sources name them: read as UTF-8 and tokenised into splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmt_cli.corpus.tokens import NoiseSplits, TokenCorpus, tokenize_documents
from rmt_cli.errors import RuntimeFailure


def as_list(value: Any) -> list[str]:
    # A single item on the command line (noise.paths=/data) arrives as a plain string.
    return [value] if isinstance(value, str) else [str(v) for v in value]


def tokenize_splits(train: list[tuple[str, Path]], eval_: list[tuple[str, Path]], tokenizer: Any) -> NoiseSplits:
    parts = []
    for docs in (train, eval_):
        tokens, starts = tokenize_documents([read_text(path) for _, path in docs], tokenizer)
        parts.append(TokenCorpus(tokens, starts, tuple(name for name, _ in docs)))
    return NoiseSplits(*parts)


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RuntimeFailure(
            f"{path} is not UTF-8 text (bad byte at offset {err.start}); "
            "convert it (e.g. `iconv -f latin1 -t utf-8`) or remove it from the corpus"
        ) from None
