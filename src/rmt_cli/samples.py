"""Samples assembled in token space: noise windows from a token corpus, facts at sentence starts, question last.

A sample is a small recipe (one noise window start per segment, where each fact goes, the question, the label),
so an input of millions of tokens costs a few kilobytes until its segments are produced, one step at a time.
Every sample is drawn from its own seeded generator, so a set is identical byte for byte for the same seed,
whatever the batch size, and training can resume at any sample index.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from rmt_cli.corpus import TokenCorpus
from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.facts import GENERATORS, LABELS, ORDER_FREE, Story, StoryPool, babi_split_files, load_babilong, read_babi

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class TaskSpec:
    """What a task puts into an input; built from the `task` config."""

    name: str
    generator: str  # key of facts.GENERATORS
    fact_position: str  # "start": first fact opens the input; "random": each fact at a random sentence start
    facts_file: str | None = None  # a bAbI text file: its stories replace the generator's
    babilong: tuple[str, str] | None = None  # (length config, split), e.g. ("0k", "qa1"): BABILong's stories

    @property
    def labels(self) -> tuple[str, ...]:
        """The answer vocabulary: the generator's, or every answer found in the task's data (sorted)."""
        if self.facts_file is None and self.babilong is None:
            return LABELS[self.generator]
        return _data_labels(self.facts_file, self.babilong)

    def stories(self, split: str):
        """Where the stories of a split come from: a callable rng -> Story (a generator or a StoryPool).

        A bAbI file trains on its *_train.txt and validates and tests on the *_test.txt beside it (if any; see
        facts.babi_split_files). BABILong publishes test rows only: every split draws from them.
        """
        if self.facts_file is None and self.babilong is None:
            return GENERATORS[self.generator]
        return _data_pool(self.facts_file, self.babilong, split == "train")

    @property
    def ordered(self) -> bool:
        """Whether the facts must appear in story order (all but qa4's order-free relations)."""
        return self.facts_file is not None or self.babilong is not None or self.generator not in ORDER_FREE


@cache
def _data_pool(facts_file: str | None, babilong: tuple[str, str] | None, train: bool) -> StoryPool:
    if facts_file is not None:
        train_file, test_file = babi_split_files(facts_file)
        return StoryPool(read_babi(train_file if train else test_file))
    return StoryPool(load_babilong(*babilong))


@cache
def _data_labels(facts_file: str | None, babilong: tuple[str, str] | None) -> tuple[str, ...]:
    pools = (_data_pool(facts_file, babilong, True), _data_pool(facts_file, babilong, False))
    return tuple(sorted({story.answer for pool in pools for story in pool.stories}))


@dataclass(frozen=True)
class PlacedFact:
    segment: int
    offset: int  # offset of the sentence start inside the segment's noise window
    tokens: np.ndarray


@dataclass(frozen=True)
class Sample:
    noise_starts: np.ndarray  # [n_segments] offsets into the corpus tokens; each window starts a sentence
    facts: tuple[PlacedFact, ...]
    question: np.ndarray
    label: int

    @property
    def n_segments(self) -> int:
        return len(self.noise_starts)


class SampleFactory:
    """Draws samples of a task from one noise split and produces their segments as token arrays."""

    def __init__(self, task: TaskSpec, corpus: TokenCorpus, tokenizer, content_length: int):
        self.task = task
        self.corpus = corpus
        self.content_length = content_length
        self.tokenizer = tokenizer
        self.window_starts = corpus.window_starts(content_length)
        if len(self.window_starts) == 0:
            raise RuntimeFailure(f"the noise split {', '.join(corpus.documents)} is shorter than one segment of "
                                 f"{content_length} tokens; add text to the corpus or lower segment.length")
        self._offsets = np.arange(content_length)

    @cache
    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int32)

    def draw(self, rng: np.random.Generator, n_segments: int, split: str = "train",
             facts_in_last: int | None = None) -> Sample:
        """One sample of n_segments; with `facts_in_last`, randomly placed facts fall in the last k segments."""
        story: Story = self.task.stories(split)(rng)
        noise_starts = self.window_starts[rng.integers(len(self.window_starts), size=n_segments)]
        question = self.encode(story.question)
        fact_tokens = [self.encode(fact) for fact in story.facts]
        budget = self.content_length - len(question) - sum(len(t) for t in fact_tokens)
        if budget < 0:
            raise UsageError(f"a {self.task.name} story and its question take {self.content_length - budget} tokens, "
                             f"more than the {self.content_length} content tokens of a segment; raise segment.length "
                             "or lower memory.size")
        if self.task.fact_position == "start":
            segments = np.zeros(len(fact_tokens), dtype=np.int64)
        else:
            first = 0 if facts_in_last is None else max(0, n_segments - facts_in_last)
            segments = rng.integers(first, n_segments, size=len(fact_tokens))
        facts = []
        for segment, tokens in zip(segments, fact_tokens):
            # A sentence start in this window that leaves room for every fact and the question after it.
            start = noise_starts[segment]
            sentence_starts = self.sentence_offsets(start, budget)
            offset = 0 if self.task.fact_position == "start" else sentence_starts[rng.integers(len(sentence_starts))]
            facts.append(PlacedFact(int(segment), int(offset), tokens))
        facts.sort(key=lambda f: (f.segment, f.offset))
        if self.task.ordered:  # the drawn places, in input order, take the facts in story order
            facts = [PlacedFact(f.segment, f.offset, tokens) for f, tokens in zip(facts, fact_tokens)]
        return Sample(noise_starts, tuple(facts), question, self.task.labels.index(story.answer))

    def sentence_offsets(self, window_start: int, limit: int) -> np.ndarray:
        """Offsets (0..limit) of the sentence starts inside the noise window that begins at window_start."""
        starts = self.corpus.sentence_starts
        lo = np.searchsorted(starts, window_start)
        hi = np.searchsorted(starts, window_start + limit, side="right")
        return starts[lo:hi] - window_start

    def sample_set(self, split: str, seed: int, n_segments: int, size: int) -> list[Sample]:
        """A fixed set: sample i comes from its own generator seeded by (seed, split, n_segments, i)."""
        code = SPLIT_CODES[split]
        return [self.draw(np.random.default_rng((seed, code, n_segments, i)), n_segments, split) for i in range(size)]

    def training_sample(self, seed: int, index: int, segments: tuple[int, int],
                        facts_in_last: int | None = None) -> Sample:
        """Training sample number `index`; its segment count is drawn uniformly from segments=(lo, hi)."""
        rng = np.random.default_rng((seed, SPLIT_CODES["train"], index))
        return self.draw(rng, int(rng.integers(segments[0], segments[1] + 1)), facts_in_last=facts_in_last)

    def segment(self, sample: Sample, index: int) -> np.ndarray:
        """Content tokens of one segment of one sample (noise with facts inserted; the question ends the last)."""
        window = self.corpus.tokens[sample.noise_starts[index] + self._offsets]
        return self.compose(sample, index, window)

    def all_segments(self, sample: Sample) -> np.ndarray:
        """[n_segments, content_length] tokens of a whole sample in one gather (for short inputs and benchmarks)."""
        tokens = self.corpus.tokens[sample.noise_starts[:, None] + self._offsets[None, :]]
        for index in {f.segment for f in sample.facts} | {sample.n_segments - 1}:
            tokens[index] = self.compose(sample, index, tokens[index])
        return tokens

    def compose(self, sample: Sample, index: int, window: np.ndarray) -> np.ndarray:
        """Content tokens of segment `index`, given its noise window."""
        if index != sample.n_segments - 1 and all(f.segment != index for f in sample.facts):
            return window
        return np.concatenate([tokens for _, tokens in self.runs(sample, index, window)])

    def runs(self, sample: Sample, index: int, window: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
        """Segment `index` as ("noise" | "fact" | "question", tokens) runs: the facts inserted into the noise window
        at their offsets, cut to the content length, the question ending the last segment."""
        if window is None:
            window = self.corpus.tokens[sample.noise_starts[index] + self._offsets]
        runs, cursor = [], 0
        for fact in sample.facts:
            if fact.segment == index:
                runs += [("noise", window[cursor:fact.offset]), ("fact", fact.tokens)]
                cursor = fact.offset
        runs.append(("noise", window[cursor:]))
        last = index == sample.n_segments - 1
        room = self.content_length - (len(sample.question) if last else 0)
        kept = []
        for kind, tokens in runs:
            tokens = tokens[:room]
            room -= len(tokens)
            if len(tokens):
                kept.append((kind, tokens))
        return kept + [("question", sample.question)] if last else kept


@dataclass(frozen=True)
class BatchPlan:
    """Right-aligned schedule of a batch: every sample's last segment falls on the final step.

    Samples are sorted by segment count, longest first, so that the samples active at a step are always a prefix
    of the batch: step t runs rows [0, active[t]) and a sample costs nothing before its first segment.
    """

    samples: tuple[Sample, ...]  # sorted, longest first
    order: np.ndarray  # order[j] = position in the caller's list of sorted row j
    counts: np.ndarray  # segments of each sorted row

    @classmethod
    def right_aligned(cls, samples: list[Sample]) -> "BatchPlan":
        order = np.argsort([-s.n_segments for s in samples], kind="stable")
        ordered = tuple(samples[i] for i in order)
        return cls(ordered, order, np.array([s.n_segments for s in ordered]))

    @property
    def n_steps(self) -> int:
        return int(self.counts[0])

    def active_rows(self, step: int) -> int:
        return int(np.sum(self.counts >= self.n_steps - step))

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)


def step_tokens(factory: SampleFactory, plan: BatchPlan, step: int) -> np.ndarray:
    """[active rows, content_length] token ids of one step of a right-aligned batch (vectorised gather)."""
    rows = plan.active_rows(step)
    samples = plan.samples[:rows]
    local = [s.n_segments - plan.n_steps + step for s in samples]
    starts = np.fromiter((s.noise_starts[i] for s, i in zip(samples, local)), dtype=np.int64, count=rows)
    tokens = factory.corpus.tokens[starts[:, None] + factory._offsets[None, :]]
    for row, (sample, index) in enumerate(zip(samples, local)):
        if index == sample.n_segments - 1 or any(f.segment == index for f in sample.facts):
            tokens[row] = factory.compose(sample, index, tokens[row])
    return tokens
