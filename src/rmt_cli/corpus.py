"""Noise text: natural-language filler that facts are hidden in, tokenised once and cached.

A corpus is split by document into train and eval parts (validation and test draw from eval), then
every sentence is tokenised and the token ids are concatenated, remembering where each sentence
starts. Samples are later cut from these arrays as windows that begin at a sentence start.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rmt_cli.atomic import atomic_file
from rmt_cli.austen import default_austen_dir
from rmt_cli.errors import RuntimeFailure, UsageError

MIN_SPLIT_TOKENS = 10_000
_CACHE_FORMAT = 1  # bump when sentence splitting or the cache layout changes
_BATCH_SENTENCES = 8192

# A sentence ends at . ! or ? (plus closing quotes/brackets) followed by whitespace, except after
# common titles, so "Mr. Bennet replied." stays one sentence.
_SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)([.!?]+[\"'”’)\]]*)\s+")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")

SOURCES = ("austen", "files", "synthetic", "hub")


class UnknownNoiseSource(UsageError):
    def __init__(self, source):
        self.source = source
        super().__init__(f"unknown noise source {source!r}; the sources are {', '.join(SOURCES)}")


class AustenCorpusMissing(RuntimeFailure):
    """The Austen corpus folder `root` does not exist (`folder_exists` False) or holds no .txt file; `default`: it
    is the default folder, not one the config named."""

    def __init__(self, root: Path, folder_exists: bool, default: bool):
        self.root, self.folder_exists, self.default = root, folder_exists, default
        super().__init__(f"no .txt files in {root}" if folder_exists else f"Austen corpus not found at {root}")


class UnknownEvalDocuments(RuntimeFailure):
    """Documents held out for evaluation (`missing`) are not among the corpus's (`available`) in `root`."""

    def __init__(self, missing: list[str], root: Path, available: list[str], default: bool):
        self.missing, self.root, self.available, self.default = missing, root, available, default
        super().__init__(f"evaluation documents {missing} not found in {root} (it has {available})")


class NoTrainingDocuments(UsageError):
    def __init__(self):
        super().__init__("the evaluation documents are every Austen novel; leave at least one for training")


class NoNoisePaths(UsageError):
    def __init__(self):
        super().__init__("no noise files or folders given")


class NoiseFilesMissing(RuntimeFailure):
    """A noise path (`where`) does not exist (`path_exists` False), or the paths hold no .txt file."""

    def __init__(self, where: str, path_exists: bool):
        self.where, self.path_exists = where, path_exists
        super().__init__(f"no .txt files in {where}; put UTF-8 .txt files there" if path_exists else
                         f"noise path {where} does not exist")


class NotARegularFile(UsageError):
    """A noise file that is a named pipe, socket or device (reading a pipe would wait for a writer forever)."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"noise file {path} is not a regular file (a named pipe, socket or device)")


class BadEvalFraction(UsageError):
    def __init__(self, fraction):
        self.fraction = fraction
        super().__init__(f"the evaluation fraction must be between 0 and 1, got {fraction}")


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


class NoPlainWords(RuntimeFailure):
    def __init__(self):
        super().__init__("the tokenizer has no plain lowercase word tokens for synthetic noise")


class CorpusTooSmall(RuntimeFailure):
    """The `source` corpus has no text (`split` None), or its `split` has `tokens` tokens, fewer than
    MIN_SPLIT_TOKENS."""

    def __init__(self, source: str, split: str | None = None, tokens: int = 0):
        self.source, self.split, self.tokens = source, split, tokens
        super().__init__(f"the {source} noise corpus contains no text" if split is None else
                         f"the {split} split of the {source} noise corpus has only {tokens:,} tokens "
                         f"(need {MIN_SPLIT_TOKENS:,})")


@dataclass(frozen=True)
class TokenCorpus:
    tokens: np.ndarray  # int32, the split's documents' tokens concatenated
    sentence_starts: np.ndarray  # int64, sorted offsets into `tokens` where a sentence begins (0 included)
    documents: tuple[str, ...]  # names of the documents in this split

    def window_starts(self, length: int) -> np.ndarray:
        """Sentence starts s with s + length <= len(tokens): where a window of `length` tokens fits."""
        last = len(self.tokens) - length
        return self.sentence_starts[: np.searchsorted(self.sentence_starts, last, side="right")]


@dataclass(frozen=True)
class NoiseSplits:
    train: TokenCorpus
    eval: TokenCorpus  # validation and test sets draw from these documents (with different seeds)


def load_noise(cfg: Any, tokenizer: Any, cache_dir: Path | None = None) -> NoiseSplits:
    """Load the `noise` config node's corpus as token arrays, from the cache when possible."""
    source = cfg.source
    if source == "synthetic":
        splits = _synthetic(cfg, tokenizer)
        _check_sizes(splits, source)
        return splits
    if cache_dir is None:
        cache_dir = Path(os.environ.get("RMT_CACHE_DIR") or Path.home() / ".cache" / "rmt" / "tokens")
    if source == "austen":
        key, build = _austen(cfg, tokenizer)
    elif source == "files":
        key, build = _files(cfg, tokenizer)
    elif source == "hub":
        key, build = _hub(cfg, tokenizer)
    else:
        raise UnknownNoiseSource(source)
    return _cached({"source": source, **key}, tokenizer, Path(cache_dir).expanduser(), build)


# ---------------------------------------------------------------------------------------------
# Sources. Each returns a cache key (everything the result depends on, besides the tokenizer)
# and a function that builds the splits when the cache misses.

_Build = Callable[[], NoiseSplits]


def _austen(cfg: Any, tokenizer: Any) -> tuple[dict, _Build]:
    custom = cfg.get("path")
    root = Path(custom).expanduser() if custom else default_austen_dir()
    if not root.is_dir():
        raise AustenCorpusMissing(root, folder_exists=False, default=not custom)
    files = {p.stem: p for p in sorted(root.glob("*.txt"))}
    if not files:
        raise AustenCorpusMissing(root, folder_exists=True, default=not custom)
    eval_names = _as_list(cfg.eval_documents)
    missing = [name for name in eval_names if name not in files]
    if missing:
        raise UnknownEvalDocuments(missing, root, sorted(files), default=not custom)
    train_names = [name for name in files if name not in eval_names]
    if not train_names:
        raise NoTrainingDocuments()
    train = [(name, files[name]) for name in train_names]
    eval_ = [(name, files[name]) for name in eval_names]
    return _documents_key(train, eval_), lambda: _tokenize_splits(train, eval_, tokenizer)


def _files(cfg: Any, tokenizer: Any) -> tuple[dict, _Build]:
    roots = [Path(p).expanduser() for p in _as_list(cfg.paths)]
    if not roots:
        raise NoNoisePaths()
    found: set[Path] = set()
    for root in roots:
        if root.is_dir():
            found.update(root.rglob("*.txt"))
        elif root.exists():
            found.add(root)
        else:
            raise NoiseFilesMissing(str(root), path_exists=False)
    for path in found:
        if not path.is_file():  # reading a named pipe would wait for a writer forever
            raise NotARegularFile(path)
    if not found:
        where = ", ".join(map(str, roots))
        raise NoiseFilesMissing(where, path_exists=True)
    docs = [(str(p), p) for p in sorted(found)]
    fraction = cfg.eval_fraction
    if not 0.0 < fraction < 1.0:
        raise BadEvalFraction(fraction)

    if len(docs) == 1:
        name, path = docs[0]
        key = {**_documents_key(docs, []), "eval_fraction": fraction}
        return key, lambda: _tail_split(name, path, fraction, tokenizer)

    # Hold out whole documents from the end, as long as that brings eval closer to the fraction.
    sizes = [p.stat().st_size for _, p in docs]
    target = fraction * sum(sizes)
    n_eval, eval_size = 1, sizes[-1]
    while n_eval < len(docs) - 1 and abs(eval_size + sizes[-n_eval - 1] - target) < abs(eval_size - target):
        n_eval += 1
        eval_size += sizes[-n_eval]
    train, eval_ = docs[:-n_eval], docs[-n_eval:]
    return _documents_key(train, eval_), lambda: _tokenize_splits(train, eval_, tokenizer)


def _as_list(value: Any) -> list[str]:
    # A single item on the command line (noise.paths=/data) arrives as a plain string.
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _hub(cfg: Any, tokenizer: Any) -> tuple[dict, _Build]:
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


def _synthetic(cfg: Any, tokenizer: Any) -> NoiseSplits:
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


# ---------------------------------------------------------------------------------------------
# Text to tokens.


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace collapsed; blank lines always end a sentence."""
    sentences: list[str] = []
    for paragraph in _BLANK_LINE.split(text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            sentences += _SENTENCE_END.sub(r"\1\n", paragraph).split("\n")
    return sentences


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


def _tokenize_splits(train: list[tuple[str, Path]], eval_: list[tuple[str, Path]], tokenizer: Any) -> NoiseSplits:
    parts = []
    for docs in (train, eval_):
        tokens, starts = tokenize_documents([_read_text(path) for _, path in docs], tokenizer)
        parts.append(TokenCorpus(tokens, starts, tuple(name for name, _ in docs)))
    return NoiseSplits(*parts)


def _tail_split(name: str, path: Path, fraction: float, tokenizer: Any) -> NoiseSplits:
    """One document: its last `fraction` of tokens (cut at a sentence start) becomes eval."""
    tokens, starts = tokenize_documents([_read_text(path)], tokenizer)
    i = int(np.searchsorted(starts, (1.0 - fraction) * len(tokens)))
    if len(tokens) >= 2 * MIN_SPLIT_TOKENS and i >= len(starts):
        raise RuntimeFailure(
            f"{path} holds {len(tokens):,} tokens in {len(starts):,} sentence(s), none starting in its last "
            f"{round(100 * fraction)}% (held out for evaluation): noise is cut at sentence starts, so give text "
            "with sentence ends (. ! ?) or blank lines"
        )
    cut = int(starts[i]) if i < len(starts) else len(tokens)
    percent = round(100 * (1 - fraction))
    return NoiseSplits(
        TokenCorpus(tokens[:cut], starts[:i], (f"{name} (first {percent}%)",)),
        TokenCorpus(tokens[cut:], starts[i:] - cut, (f"{name} (last {100 - percent}%)",)),
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RuntimeFailure(
            f"{path} is not UTF-8 text (bad byte at offset {err.start}); "
            "convert it (e.g. `iconv -f latin1 -t utf-8`) or remove it from the corpus"
        ) from None


def _check_sizes(splits: NoiseSplits, source: str) -> None:
    if len(splits.train.tokens) + len(splits.eval.tokens) == 0:
        raise CorpusTooSmall(source)
    for split, corpus in (("train", splits.train), ("eval", splits.eval)):
        if len(corpus.tokens) < MIN_SPLIT_TOKENS:
            raise CorpusTooSmall(source, split, len(corpus.tokens))


# ---------------------------------------------------------------------------------------------
# Cache: one .npz per (corpus, split assignment, tokenizer).


def _documents_key(train: list[tuple[str, Path]], eval_: list[tuple[str, Path]]) -> dict:
    def describe(docs: list[tuple[str, Path]]) -> list[list]:
        return [[name, (st := path.stat()).st_size, st.st_mtime_ns] for name, path in docs]

    return {"train": describe(train), "eval": describe(eval_)}


def _cached(key: dict, tokenizer: Any, cache_dir: Path, build: _Build) -> NoiseSplits:
    full_key = {**key, "tokenizer": [str(tokenizer.name_or_path), len(tokenizer)], "format": _CACHE_FORMAT}
    digest = hashlib.sha256(json.dumps(full_key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / f"{key['source']}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return NoiseSplits(*(
                    TokenCorpus(z[f"{s}_tokens"], z[f"{s}_starts"], tuple(z[f"{s}_documents"].tolist()))
                    for s in ("train", "eval")
                ))
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # unreadable cache file: rebuild and overwrite it

    splits = build()
    _check_sizes(splits, key["source"])
    arrays = {}
    for s, corpus in (("train", splits.train), ("eval", splits.eval)):
        arrays[f"{s}_tokens"] = corpus.tokens
        arrays[f"{s}_starts"] = corpus.sentence_starts
        arrays[f"{s}_documents"] = np.array(corpus.documents, dtype=str)
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
