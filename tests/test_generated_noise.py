"""Training noise generated from the training text (corpus/generated.py, noise.generated_training_tokens)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from rmt_cli.corpus import TokenCorpus, load_noise
from rmt_cli.corpus.generated import generate, with_generated


@pytest.fixture(scope="module")
def source(tokenizer) -> TokenCorpus:
    from test_corpus import make_document

    from rmt_cli.corpus import tokenize_documents

    texts = [make_document(doc, 400)[0] for doc in range(3)]
    tokens, starts = tokenize_documents(texts, tokenizer)
    return TokenCorpus(tokens, starts, ("a", "b", "c"))


def grams(tokens: np.ndarray, n: int) -> set[bytes]:
    return {row.tobytes() for row in np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int32), n)}


@pytest.mark.parametrize("context", [1, 3])
def test_every_generated_token_follows_its_context_somewhere_in_the_source(source, context):
    streams, steps = 16, 300
    tokens, starts = generate(source, streams * steps, context, seed=0, streams=streams)
    assert tokens.dtype == np.int32 and len(tokens) == streams * steps
    seen = grams(np.concatenate([source.tokens, source.tokens[:context]]), context + 1)  # the source as a ring
    runs = tokens.reshape(streams, steps)  # each chain's run: consecutive tokens are one walk of the chain
    for run in runs:
        for gram in np.lib.stride_tricks.sliding_window_view(run, context + 1):
            assert gram.tobytes() in seen
    # ...yet the passages are new: most of the generated 12-token runs occur nowhere in the source
    source_12 = grams(source.tokens, 12)
    runs_12 = np.lib.stride_tricks.sliding_window_view(runs, 12, axis=1).reshape(-1, 12)
    found = np.mean([gram.tobytes() in source_12 for gram in runs_12])
    assert found < 0.5


def test_generated_sentences_start_where_source_sentences_start(source):
    streams, steps = 8, 500
    tokens, starts = generate(source, streams * steps, 3, seed=1, streams=streams)
    assert np.all(np.diff(starts) > 0) and starts[0] == 0 and starts[-1] < len(tokens)
    assert set(range(0, streams * steps, steps)) <= set(starts.tolist())  # every chain begins a sentence
    first_tokens = set(source.tokens[source.sentence_starts].tolist())
    assert set(tokens[starts].tolist()) <= first_tokens
    lengths = np.diff(starts)
    real = np.diff(source.sentence_starts)
    assert 0.5 * real.mean() < lengths.mean() < 2 * real.mean()


def test_the_same_seed_generates_the_same_text(source):
    a, starts_a = generate(source, 5000, 3, seed=0)
    b, starts_b = generate(source, 5000, 3, seed=0)
    c, _ = generate(source, 5000, 3, seed=1)
    assert np.array_equal(a, b) and np.array_equal(starts_a, starts_b)
    assert not np.array_equal(a, c)


def test_the_generated_text_follows_the_source_as_one_more_document(source):
    more = with_generated(source, 3000, 2)
    assert more.documents == (*source.documents, "generated from the above (2-token context)")
    assert np.array_equal(more.tokens[: len(source.tokens)], source.tokens)
    assert len(more.tokens) == len(source.tokens) + 3000
    n = len(source.sentence_starts)
    assert np.array_equal(more.sentence_starts[:n], source.sentence_starts)
    assert more.sentence_starts[n] == len(source.tokens) and np.all(np.diff(more.sentence_starts) > 0)


def test_generated_tokens_join_the_training_noise_only_and_are_cached_apart(tmp_path, tokenizer):
    from test_corpus import write_documents

    write_documents(tmp_path / "books", 4)
    cfg = {"source": "files", "paths": [str(tmp_path / "books")], "eval_fraction": 0.25}
    plain = load_noise(OmegaConf.create(cfg), tokenizer, tmp_path / "cache")
    more = load_noise(OmegaConf.create({**cfg, "generated_training_tokens": 20000}), tokenizer, tmp_path / "cache")
    assert len(more.train.tokens) == len(plain.train.tokens) + 20000
    assert more.train.documents[:-1] == plain.train.documents
    assert np.array_equal(more.eval.tokens, plain.eval.tokens) and more.eval.documents == plain.eval.documents
    other = load_noise(OmegaConf.create({**cfg, "generated_training_tokens": 20000, "generated_context": 2}),
                       tokenizer, tmp_path / "cache")
    assert not np.array_equal(other.train.tokens, more.train.tokens)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    again = load_noise(OmegaConf.create({**cfg, "generated_training_tokens": 20000}), tokenizer, tmp_path / "cache")
    assert np.array_equal(again.train.tokens, more.train.tokens)


def test_a_run_trains_on_a_share_of_generated_noise_and_refuses_a_negative_amount(tmp_path):
    from helpers.cli import rmt

    text = tmp_path / "book.txt"
    text.write_text("It was a fine day, and Mary sat in the garden and talked of the weather.\n" * 7000)
    args = ("experiment=smoke", "noise=files", f"noise.paths=[{text}]", "curriculum.stages=[{segments:2,steps:2}]")
    result = rmt("train", *args, "noise.generated_training_tokens=50000", "curriculum.generated_share=0.5",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    assert "generated from the above (3-token context)" in (tmp_path / "run" / "train.log").read_text()
    result = rmt("train", *args, "noise.generated_training_tokens=-1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert result.returncode == 2
    assert "noise.generated_training_tokens=-1 must be at least 0" in result.stderr


def test_the_generated_part_is_marked_and_kept_through_the_cache(tmp_path, tokenizer, source):
    assert source.generated_from is None
    assert with_generated(source, 3000, 2).generated_from == len(source.tokens)
    from test_corpus import write_documents

    write_documents(tmp_path / "books", 4)
    cfg = {"source": "files", "paths": [str(tmp_path / "books")], "eval_fraction": 0.25}
    plain = load_noise(OmegaConf.create(cfg), tokenizer, tmp_path / "cache")
    for _ in range(2):  # built, then read from the cache
        more = load_noise(OmegaConf.create({**cfg, "generated_training_tokens": 8000}), tokenizer, tmp_path / "cache")
        assert more.train.generated_from == len(plain.train.tokens) and more.eval.generated_from is None
    assert load_noise(OmegaConf.create(cfg), tokenizer, tmp_path / "cache").train.generated_from is None


@pytest.fixture(scope="module")
def detect_factory(tokenizer):
    """Detect samples drawn from noise whose source names places now and then (windows that can be confusers),
    followed by 20,000 tokens generated from it."""
    from test_corpus import make_document

    from rmt_cli.corpus import tokenize_documents
    from rmt_cli.samples import SampleFactory
    from rmt_cli.task_spec import TaskSpec

    places = " ".join(f"Then she walked into the {place}." for place in ["garden", "kitchen", "office"] * 20)
    tokens, starts = tokenize_documents([make_document(doc, 400)[0] + "\n\n" + places for doc in range(3)],
                                        tokenizer)
    source = TokenCorpus(tokens, starts, ("a", "b", "c"))
    # 16 chains of 1,250 tokens: long enough to walk through the place sentences
    return SampleFactory(TaskSpec("detect", "qa1", "random"), with_generated(source, 20000, 3, streams=16),
                         tokenizer, 64)


@pytest.mark.parametrize("confuser_share", [0.0, 1.0])
def test_a_stage_draws_its_share_of_noise_windows_from_generated_text(detect_factory, confuser_share):
    from rmt_cli.samples import TrainingMix

    boundary = detect_factory.corpus.generated_from

    def share_generated(generated_share) -> float:
        rng = np.random.default_rng(0)
        mix = TrainingMix(confuser_share=confuser_share, generated_share=generated_share)
        starts = np.concatenate([detect_factory.draw(rng, 20, mix=mix).noise_starts for _ in range(50)])
        return float(np.mean(starts >= boundary))

    assert share_generated(0.0) == 0.0  # confusers too come from the text each window was drawn from
    assert share_generated(1.0) == 1.0
    assert 0.2 < share_generated(0.3) < 0.4
    # unset: windows drawn from all training noise alike, so in proportion to the windows of each text
    windows = detect_factory.confuser_windows if confuser_share else detect_factory.window_starts
    assert abs(share_generated(None) - np.mean(windows >= boundary)) < 0.06


def test_without_a_share_samples_are_drawn_as_before_the_switch_existed(detect_factory):
    from dataclasses import replace

    from rmt_cli.samples import SampleFactory, TrainingMix

    unmarked = SampleFactory(detect_factory.task, replace(detect_factory.corpus, generated_from=None),
                             detect_factory.tokenizer, 64)
    for mix in (TrainingMix(), TrainingMix(confuser_share=0.5)):
        a = detect_factory.draw(np.random.default_rng(3), 12, mix=mix)
        b = unmarked.draw(np.random.default_rng(3), 12, mix=mix)
        assert np.array_equal(a.noise_starts, b.noise_starts)
        assert [(f.segment, f.offset) for f in a.facts] == [(f.segment, f.offset) for f in b.facts]
    # noise without generated text (validation and test noise) draws as if no share were asked for
    a = unmarked.draw(np.random.default_rng(3), 12, mix=TrainingMix(generated_share=0.5))
    assert np.array_equal(a.noise_starts, unmarked.draw(np.random.default_rng(3), 12).noise_starts)


def test_a_share_of_generated_noise_needs_generated_windows(source, tokenizer):
    from rmt_cli.sample_errors import NoGeneratedWindows
    from rmt_cli.samples import SampleFactory, TrainingMix
    from rmt_cli.task_spec import TaskSpec

    short = SampleFactory(TaskSpec("detect", "qa1", "random"), with_generated(source, 30, 3), tokenizer, 64)
    with pytest.raises(NoGeneratedWindows, match="holds no text generated from it of a segment's 64 tokens"):
        short.draw(np.random.default_rng(0), 8, mix=TrainingMix(generated_share=1.0))
    short.draw(np.random.default_rng(0), 8, mix=TrainingMix(generated_share=0.0))  # source text only: fine
