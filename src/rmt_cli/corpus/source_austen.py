"""noise=austen: Jane Austen's novels, one .txt file each, with whole novels held out for evaluation; other text
files may join the training noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rmt_cli.austen import default_austen_dir
from rmt_cli.corpus.cache import Build, documents_key
from rmt_cli.corpus.documents import as_list, tokenize_splits
from rmt_cli.corpus.source_files import text_files
from rmt_cli.errors import RuntimeFailure, UsageError


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


class HeldOutInTraining(UsageError):
    """The extra training noise includes novels held out for validation and test (`names`)."""

    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(f"the extra training noise includes the held-out novels {names}, which validation and test "
                         "noise come from")


def austen_noise(cfg: Any, tokenizer: Any) -> tuple[dict, Build]:
    """The cache key of the `noise` node's novels and the function that tokenises them."""
    custom = cfg.path
    root = Path(custom).expanduser() if custom else default_austen_dir()
    if not root.is_dir():
        raise AustenCorpusMissing(root, folder_exists=False, default=not custom)
    files = {p.stem: p for p in sorted(root.glob("*.txt"))}
    if not files:
        raise AustenCorpusMissing(root, folder_exists=True, default=not custom)
    eval_names = as_list(cfg.eval_documents)
    missing = [name for name in eval_names if name not in files]
    if missing:
        raise UnknownEvalDocuments(missing, root, sorted(files), default=not custom)
    train_names = [name for name in files if name not in eval_names]
    if not train_names:
        raise NoTrainingDocuments()
    train = [(name, files[name]) for name in train_names]
    eval_ = [(name, files[name]) for name in eval_names]
    extra = as_list(cfg.extra_training)
    if extra:  # more training noise; validation and test noise stay the held-out novels
        held_out = {path.resolve(): name for name, path in eval_}
        added = text_files(extra, "noise.extra_training")
        leaked = [held_out[path.resolve()] for _, path in added if path.resolve() in held_out]
        if leaked:
            raise HeldOutInTraining(leaked)
        novels = {path.resolve() for _, path in train}
        train += [(name, path) for name, path in added if path.resolve() not in novels]
    return documents_key(train, eval_), lambda: tokenize_splits(train, eval_, tokenizer)
