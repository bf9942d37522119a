"""noise=files: the user's own UTF-8 .txt files and folders, split into train and eval by `eval_fraction`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rmt_cli.corpus.cache import Build, documents_key
from rmt_cli.corpus.documents import as_list, read_text, tokenize_splits
from rmt_cli.corpus.sizes import MIN_SPLIT_TOKENS
from rmt_cli.corpus.tokens import NoiseSplits, TokenCorpus, tokenize_documents
from rmt_cli.errors import RuntimeFailure, UsageError


class NoNoisePaths(UsageError):
    def __init__(self):
        super().__init__("no noise files or folders given")


class NoiseFilesMissing(RuntimeFailure):
    """A noise path (`where`) of the `setting` does not exist (`path_exists` False), or the paths hold no .txt
    file."""

    def __init__(self, where: str, path_exists: bool, setting: str = "noise.paths"):
        self.where, self.path_exists, self.setting = where, path_exists, setting
        super().__init__(f"no .txt files in {where}; put UTF-8 .txt files there" if path_exists else
                         f"noise path {where} does not exist")


class NotARegularFile(UsageError):
    """A noise file of the `setting` that is a named pipe, socket or device (reading a pipe would wait for a writer
    forever)."""

    def __init__(self, path: Path, setting: str = "noise.paths"):
        self.path, self.setting = path, setting
        super().__init__(f"noise file {path} is not a regular file (a named pipe, socket or device)")


class CorpusNotDownloaded(RuntimeFailure):
    """A noise path of the `setting` names a corpus that `rmt download` fetches (`name`), and its `folder` is not
    there."""

    def __init__(self, name: str, folder: Path, setting: str):
        self.name, self.folder, self.setting = name, folder, setting
        super().__init__(f"the {name} corpus is not downloaded ({folder} does not exist)")


def downloaded_corpora() -> dict[str, Path]:
    """Corpora that `rmt download --NAME` fetches, by the name a noise path may give instead of a folder."""
    from rmt_cli.download import corpus_folder

    return {"shakespeare": corpus_folder("shakespeare")}


class BadEvalFraction(UsageError):
    def __init__(self, fraction):
        self.fraction = fraction
        super().__init__(f"the evaluation fraction must be between 0 and 1, got {fraction}")


def files_noise(cfg: Any, tokenizer: Any) -> tuple[dict, Build]:
    """The cache key of the `noise` node's files and their split, and the function that tokenises them."""
    paths = as_list(cfg.paths)
    if not paths:
        raise NoNoisePaths()
    docs = text_files(paths, "noise.paths")
    fraction = cfg.eval_fraction
    if not 0.0 < fraction < 1.0:
        raise BadEvalFraction(fraction)

    if len(docs) == 1:
        name, path = docs[0]
        key = {**documents_key(docs, []), "eval_fraction": fraction}
        return key, lambda: _tail_split(name, path, fraction, tokenizer)

    # Hold out whole documents from the end, as long as that brings eval closer to the fraction.
    sizes = [p.stat().st_size for _, p in docs]
    target = fraction * sum(sizes)
    n_eval, eval_size = 1, sizes[-1]
    while n_eval < len(docs) - 1 and abs(eval_size + sizes[-n_eval - 1] - target) < abs(eval_size - target):
        n_eval += 1
        eval_size += sizes[-n_eval]
    train, eval_ = docs[:-n_eval], docs[-n_eval:]
    return documents_key(train, eval_), lambda: tokenize_splits(train, eval_, tokenizer)


def text_files(paths: list[str], setting: str) -> list[tuple[str, Path]]:
    """(name, path) of the .txt files that `paths` name, files or folders searched recursively, in sorted order; the
    errors name the `setting` the paths came from. A bare name of a downloaded corpus (`shakespeare`) that is no
    path here stands for the folder `rmt download` put it in (write ./shakespeare for a folder of that name)."""
    corpora = downloaded_corpora()
    roots = []
    for entry in map(str, paths):
        if entry in corpora and not Path(entry).exists():
            if not corpora[entry].is_dir():
                raise CorpusNotDownloaded(entry, corpora[entry], setting)
            roots.append(corpora[entry])
        else:
            roots.append(Path(entry).expanduser())
    found: set[Path] = set()
    for root in roots:
        if root.is_dir():
            found.update(root.rglob("*.txt"))
        elif root.exists():
            found.add(root)
        else:
            raise NoiseFilesMissing(str(root), path_exists=False, setting=setting)
    for path in found:
        if not path.is_file():  # reading a named pipe would wait for a writer forever
            raise NotARegularFile(path, setting)
    if not found:
        raise NoiseFilesMissing(", ".join(map(str, roots)), path_exists=True, setting=setting)
    return [(str(p), p) for p in sorted(found)]


def _tail_split(name: str, path: Path, fraction: float, tokenizer: Any) -> NoiseSplits:
    """One document: its last `fraction` of tokens (cut at a sentence start) becomes eval."""
    tokens, starts = tokenize_documents([read_text(path)], tokenizer)
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
