"""Samples assembled in token space: noise windows from a token corpus, facts at sentence starts, question last.

A sample is a small recipe (one noise window start per segment, where each fact goes, the question, the label),
so an input of millions of tokens costs a few kilobytes until its segments are produced, one step at a time.
Every sample is drawn from its own seeded generator, so a set is identical byte for byte for the same seed,
whatever the batch size, and training can resume at any sample index.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

from rmt_cli.babi import babi_split_files, read_babi
from rmt_cli.babilong import load_babilong
from rmt_cli.corpus import TokenCorpus
from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.facts import Story
from rmt_cli.stories import GENERATORS, LABELS, ORDER_FREE, StoryPool

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}


class NoiseShorterThanSegment(RuntimeFailure):
    """The noise split made of `documents` holds no window of `content_length` tokens."""

    def __init__(self, documents: tuple[str, ...], content_length: int):
        self.documents, self.content_length = documents, content_length
        super().__init__(f"the noise split {', '.join(documents)} is shorter than one segment of {content_length} "
                         "tokens")


class StoriesDoNotFit(UsageError):
    """No story drawn from `task`'s generator fits an input of `n_segments` segments of `content_length` tokens."""

    def __init__(self, task: str, n_segments: int, content_length: int):
        self.task, self.n_segments, self.content_length = task, n_segments, content_length
        super().__init__(f"{task} stories do not fit inputs of {n_segments} segments of {content_length} content "
                         "tokens")


class SentenceLongerThanSegment(UsageError):
    """A story (`where`: its file and line, or its task) has a sentence longer than a segment's content."""

    def __init__(self, where: str, content_length: int):
        self.where, self.content_length = where, content_length
        super().__init__(f"{where} has a sentence longer than the {content_length} content tokens of a segment")


class NoConfusers(UsageError):
    """Training noise asked to hold `share` of windows that name one of the `labels` has no such window."""

    def __init__(self, share: float, labels: tuple[str, ...]):
        self.share, self.labels = share, labels
        super().__init__(f"the training noise never names one of the answers ({', '.join(labels)}), so no share "
                         f"({share:g}) of its windows can be drawn from those that do")


class StoryNeedsMoreSegments(UsageError):
    """The longest story of a task's data (`where`, `facts` facts and its question in `tokens` tokens) needs `need`
    segments of `content_length` tokens; the input has `n_segments`."""

    def __init__(self, where: str, facts: int, tokens: int, need: int, n_segments: int, content_length: int):
        self.where, self.facts, self.tokens = where, facts, tokens
        self.need, self.n_segments, self.content_length = need, n_segments, content_length
        super().__init__(f"{where} ({facts} facts and its question, {tokens} tokens) needs at least {need} segments "
                         f"of {content_length} content tokens, this input has {n_segments}")


@dataclass(frozen=True)
class TaskSpec:
    """What a task puts into an input; built from the `task` config."""

    name: str
    generator: str | None  # key of stories.GENERATORS; None: the stories come from facts_file or BABILong
    fact_position: str  # "start": the story opens the input; "random": each fact at a random sentence start
    facts_file: str | None = None  # a bAbI text file: its stories replace the generator's
    babilong: tuple[str, str] | None = None  # (length config, split), e.g. ("0k", "qa1"): BABILong's stories
    trained_labels: tuple[str, ...] | None = None  # a checkpoint's labels: answers map to them by name

    @property
    def labels(self) -> tuple[str, ...]:
        """The answer vocabulary, in the order of the classification head: a checkpoint's, else the generator's,
        else every answer found in the task's data (sorted)."""
        if self.trained_labels is not None:
            return self.trained_labels
        if self.generator in LABELS:
            return LABELS[self.generator]
        return self.answers()

    def answers(self) -> tuple[str, ...]:
        """Every answer the task's stories can have: the generator's labels, or those found in its data."""
        if self.facts_file is None and self.babilong is None:
            assert self.generator is not None, "a task without a data file has a generator (experiment.task_spec)"
            return LABELS[self.generator]
        return _data_labels(self.facts_file, self.babilong, self.generator_labels)

    @property
    def generator_labels(self) -> tuple[str, ...] | None:
        """The labels of the task's generator; None without one, or for one of no fixed labels."""
        return None if self.generator is None else LABELS.get(self.generator)

    def stories(self, split: str):
        """Where the stories of a split come from: a callable rng -> Story (a generator or a StoryPool).

        A bAbI file trains on its *_train.txt and validates and tests on the *_test.txt beside it (if any; see
        babi.babi_split_files). BABILong publishes test rows only: every split draws from them.
        """
        if self.facts_file is None and self.babilong is None:
            assert self.generator is not None, "a task without a data file has a generator (experiment.task_spec)"
            return GENERATORS[self.generator]
        return _data_pool(self.facts_file, self.babilong, split == "train", self.generator_labels)

    @property
    def ordered(self) -> bool:
        """Whether the facts must appear in story order (all but qa4's order-free relations)."""
        return self.facts_file is not None or self.babilong is not None or self.generator not in ORDER_FREE


@cache
def _data_pool(facts_file: str | None, babilong: tuple[str, str] | None, train: bool,
               labels: tuple[str, ...] | None) -> StoryPool:
    if facts_file is not None:
        train_file, test_file = babi_split_files(facts_file)
        return StoryPool(read_babi(train_file if train else test_file, labels))
    assert babilong is not None, "a data-backed task has a facts file or a BABILong split"
    return StoryPool(load_babilong(*babilong))


@cache
def _data_labels(facts_file: str | None, babilong: tuple[str, str] | None,
                 labels: tuple[str, ...] | None) -> tuple[str, ...]:
    pools = (_data_pool(facts_file, babilong, True, labels), _data_pool(facts_file, babilong, False, labels))
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

    @cached_property
    def fact_segments(self) -> frozenset[int]:
        return frozenset(f.segment for f in self.facts)


class SampleFactory:
    """Draws samples of a task from one noise split and produces their segments as token arrays."""

    def __init__(self, task: TaskSpec, corpus: TokenCorpus, tokenizer, content_length: int):
        self.task = task
        self.corpus = corpus
        self.content_length = content_length
        self.tokenizer = tokenizer
        self.window_starts = corpus.window_starts(content_length)
        if len(self.window_starts) == 0:
            raise NoiseShorterThanSegment(corpus.documents, content_length)
        self._offsets = np.arange(content_length)
        # memos of encode and pool_needs, per factory (functools.cache on a method would keep every factory alive)
        self._encoded: dict[str, np.ndarray] = {}
        self._pool_needs: dict[StoryPool, tuple[int, Story]] = {}

    def encode(self, text: str) -> np.ndarray:
        if text not in self._encoded:
            self._encoded[text] = np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"],
                                             dtype=np.int32)
        return self._encoded[text]

    def answer_spellings(self) -> list[list[np.ndarray]]:
        """Per label, the token sequences that spell it in running text: alone and after a space (BPE tokenizers
        spell a word differently at the start of a text and after a space; WordPiece gives the same tokens twice)."""
        spellings = []
        for label in self.task.labels:
            found: dict[tuple[int, ...], np.ndarray] = {}
            for text in (label, " " + label):
                tokens = self.encode(text)
                if len(tokens):
                    found.setdefault(tuple(tokens.tolist()), tokens)
            spellings.append(list(found.values()))
        return spellings

    @cached_property
    def confuser_windows(self) -> np.ndarray:
        """Starts of the noise windows in which one of the task's answers begins ("... walked into the garden ..."):
        noise that a memory must not take for a fact."""
        tokens = self.corpus.tokens
        begins = np.zeros(len(tokens) + 1, dtype=np.int64)  # begins[i + 1]: an answer's spelling starts at token i
        for sequences in self.answer_spellings():
            for sequence in sequences:
                if len(sequence) <= len(tokens):
                    windows = np.lib.stride_tricks.sliding_window_view(tokens, len(sequence))
                    begins[1:len(windows) + 1] |= (windows == sequence).all(axis=1)
        seen = np.cumsum(begins)
        return self.window_starts[seen[self.window_starts + self.content_length] > seen[self.window_starts]]

    def draw(self, rng: np.random.Generator, n_segments: int, split: str = "train",
             facts_in_last: int | None = None, confuser_share: float = 0.0) -> Sample:
        """One sample of n_segments; with `facts_in_last`, randomly placed facts fall in the last k segments (as
        far as the story fits them); with `confuser_share`, that share of the noise windows (on average) is drawn
        from those that name an answer (`confuser_windows`) instead of from all."""
        source = self.task.stories(split)
        if isinstance(source, StoryPool):
            self.check_pool(source, n_segments)
        story: Story = source(rng)
        for _ in range(MAX_REDRAWS):
            if self.segments_needed(story) <= n_segments:
                break
            # A generated story longer than this input: draw another, so short inputs hold the shorter stories.
            story = source(rng)
        else:
            raise StoriesDoNotFit(self.task.name, n_segments, self.content_length)
        noise_starts = self.window_starts[rng.integers(len(self.window_starts), size=n_segments)]
        if confuser_share:
            noise_starts = self.with_confusers(rng, noise_starts, confuser_share)
        question = self.encode(story.question)
        fact_tokens = [self.encode(fact) for fact in story.facts]
        budget = self.content_length - len(question) - sum(len(t) for t in fact_tokens)
        first = 0 if facts_in_last is None else max(0, n_segments - facts_in_last)
        if budget >= 0:
            places = self.scatter(rng, noise_starts, len(fact_tokens), budget, first)
        else:
            places = self.spread(rng, noise_starts, [len(t) for t in fact_tokens], len(question), first)
        facts = tuple(PlacedFact(segment, offset, fact_tokens[i]) for segment, offset, i in places)
        return Sample(noise_starts, facts, question, self.task.labels.index(story.answer))

    def with_confusers(self, rng: np.random.Generator, noise_starts: np.ndarray, share: float) -> np.ndarray:
        confusers = self.confuser_windows
        if len(confusers) == 0:
            raise NoConfusers(share, self.task.labels)
        chosen = rng.random(len(noise_starts)) < share
        noise_starts = noise_starts.copy()
        noise_starts[chosen] = confusers[rng.integers(len(confusers), size=int(chosen.sum()))]
        return noise_starts

    def segments_needed(self, story: Story) -> int:
        return minimum_segments(self.lengths(story), len(self.encode(story.question)), self.content_length)

    def lengths(self, story: Story) -> list[int]:
        return [len(self.encode(fact)) for fact in story.facts]

    def scatter(self, rng, noise_starts: np.ndarray, n_facts: int, budget: int,
                first: int = 0) -> list[tuple[int, int, int]]:
        """(segment, offset, fact index) in input order for a story that fits one segment with `budget` tokens to
        spare: each fact in any segment from `first` on, at a sentence start that leaves room for the whole story
        and the question after it. An ordered task's facts take the places in story order, an order-free task's in
        drawing order."""
        if self.task.fact_position == "start":
            segments = np.zeros(n_facts, dtype=np.int64)
        else:
            segments = rng.integers(first, len(noise_starts), size=n_facts)
        drawn = []
        for segment in segments:
            sentence_starts = self.sentence_offsets(noise_starts[segment], budget)
            offset = 0 if self.task.fact_position == "start" else sentence_starts[rng.integers(len(sentence_starts))]
            drawn.append((int(segment), int(offset)))
        order = sorted(range(n_facts), key=drawn.__getitem__)
        return [(*drawn[j], i if self.task.ordered else j) for i, j in enumerate(order)]

    def spread(self, rng, noise_starts: np.ndarray, lengths: list[int], question: int,
               first: int = 0) -> list[tuple[int, int, int]]:
        """(segment, offset, fact index) in input order for a story longer than one segment: the facts are dealt to
        segments from `first` on in story order, as many per segment as fit (the last keeps room for the question;
        a story too long for them reaches back before `first`), each at a sentence start; with fact_position=start
        the story opens the input and spills into the next segments."""
        n_segments = len(noise_starts)
        capacity = np.full(n_segments, self.content_length)
        capacity[-1] -= question
        story = np.arange(len(lengths)) if self.task.ordered else rng.permutation(len(lengths))
        lengths = [lengths[i] for i in story]
        if self.task.fact_position == "start":
            segments = pack(lengths, capacity)
        else:
            segments = fit(np.sort(rng.integers(first, n_segments, size=len(lengths))), lengths, capacity)
        places = []
        for segment in np.unique(segments):
            members = np.flatnonzero(segments == segment)
            room = int(capacity[segment] - sum(lengths[i] for i in members))
            if self.task.fact_position == "start":
                offsets = np.zeros(len(members), dtype=np.int64)
            else:
                sentence_starts = self.sentence_offsets(noise_starts[segment], room)
                offsets = np.sort(sentence_starts[rng.integers(len(sentence_starts), size=len(members))])
            places += [(int(segment), int(offset), int(story[i])) for offset, i in zip(offsets, members, strict=True)]
        return places

    def pool_needs(self, pool: StoryPool) -> tuple[int, Story]:
        """The fewest segments that hold every story of a pool, and the story that needs them."""
        if pool not in self._pool_needs:
            needs = ((minimum_segments(self.lengths(s), len(self.encode(s.question)), self.content_length), i)
                     for i, s in enumerate(pool.stories))
            need, index = max(needs)
            self._pool_needs[pool] = need, pool.stories[index]
        return self._pool_needs[pool]

    def check_pool(self, pool: StoryPool, n_segments: int) -> None:
        """Refuse, before any sample is drawn, inputs too short for the pool's longest story."""
        need, story = self.pool_needs(pool)
        if need <= n_segments:
            return
        where = story.source or f"a {self.task.name} story"
        if need >= UNFIT:
            raise SentenceLongerThanSegment(where, self.content_length)
        tokens = sum(self.lengths(story)) + len(self.encode(story.question))
        raise StoryNeedsMoreSegments(where, len(story.facts), tokens, need, n_segments, self.content_length)

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
                        facts_in_last: int | None = None, confuser_share: float = 0.0) -> Sample:
        """Training sample number `index`; its segment count is drawn uniformly from segments=(lo, hi)."""
        rng = np.random.default_rng((seed, SPLIT_CODES["train"], index))
        return self.draw(rng, int(rng.integers(segments[0], segments[1] + 1)), facts_in_last=facts_in_last,
                         confuser_share=confuser_share)

    def segment(self, sample: Sample, index: int) -> np.ndarray:
        """Content tokens of one segment of one sample (noise with facts inserted; the question ends the last)."""
        window = self.corpus.tokens[sample.noise_starts[index] + self._offsets]
        return self.compose(sample, index, window)

    def all_segments(self, sample: Sample) -> np.ndarray:
        """[n_segments, content_length] tokens of a whole sample in one gather (for short inputs and benchmarks)."""
        tokens = self.corpus.tokens[sample.noise_starts[:, None] + self._offsets[None, :]]
        for index in sample.fact_segments | {sample.n_segments - 1}:
            tokens[index] = self.compose(sample, index, tokens[index])
        return tokens

    def compose(self, sample: Sample, index: int, window: np.ndarray) -> np.ndarray:
        """Content tokens of segment `index`, given its noise window."""
        if index != sample.n_segments - 1 and index not in sample.fact_segments:
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


UNFIT = 1 << 30  # segments "needed" by a story with a sentence longer than a segment
MAX_REDRAWS = 1000


def minimum_segments(lengths: list[int], question: int, content: int) -> int:
    """The fewest segments of `content` tokens that hold facts of these lengths in order and the question last."""
    if max(lengths, default=0) > content or question > content:
        return UNFIT
    segments, load = 1, 0
    for length in lengths:
        if load + length > content:
            segments, load = segments + 1, 0
        load += length
    return segments + (load + question > content)


def pack(lengths: list[int], capacity: np.ndarray) -> np.ndarray:
    """Segment of each fact when facts fill segments in order from the first (next fit)."""
    segments, segment, load = np.zeros(len(lengths), dtype=np.int64), 0, 0
    for i, length in enumerate(lengths):
        if load + length > capacity[segment]:
            segment, load = segment + 1, 0
        segments[i], load = segment, load + length
    return segments


def fit(drawn: np.ndarray, lengths: list[int], capacity: np.ndarray) -> np.ndarray:
    """Drawn segments (non-decreasing) moved as little as it takes for every segment's facts to fit it: facts that
    overflow a segment move on to the next, then those pushed past the last come back toward the first."""
    segments = [int(s) for s in drawn]
    n = len(capacity)
    for order, step in ((range(len(lengths)), 1), (range(len(lengths) - 1, -1, -1), -1)):
        current, load = (0, 0) if step == 1 else (n - 1, 0)
        for i in order:
            target = max(segments[i], current) if step == 1 else min(segments[i], current)
            if target != current:
                current, load = target, 0
            while 0 <= current < n and load + lengths[i] > capacity[current]:
                current, load = current + step, 0
            segments[i], load = current, load + lengths[i]
    if min(segments) < 0:  # moving facts back and forth found no fit; the first-fit packing does
        return pack(lengths, capacity)
    return np.array(segments, dtype=np.int64)


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
    starts = np.fromiter((s.noise_starts[i] for s, i in zip(samples, local, strict=True)), dtype=np.int64, count=rows)
    tokens = factory.corpus.tokens[starts[:, None] + factory._offsets[None, :]]
    for row, (sample, index) in enumerate(zip(samples, local, strict=True)):
        if index == sample.n_segments - 1 or index in sample.fact_segments:
            tokens[row] = factory.compose(sample, index, tokens[row])
    return tokens
