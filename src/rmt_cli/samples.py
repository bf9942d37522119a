"""Samples assembled in token space: noise windows from a token corpus, facts at sentence starts, question last.

A sample is a small recipe (one noise window start per segment, where each fact goes, the question, the label),
so an input of millions of tokens costs a few kilobytes until its segments are produced, one step at a time
(batches.py schedules them, placement.py fits facts into segments, task_spec.py says what a task puts in).
Every sample is drawn from its own seeded generator, so a set is identical byte for byte for the same seed,
whatever the batch size, and training can resume at any sample index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rmt_cli.corpus import TokenCorpus
from rmt_cli.facts import Story, facts_naming_the_question
from rmt_cli.placement import UNFIT, fit, minimum_segments, pack
from rmt_cli.sample_errors import (NoConfusers, NoGeneratedWindows, NoiseShorterThanSegment, NoMultiFactStories,
                                   SentenceLongerThanSegment, StoriesDoNotFit, StoryNeedsMoreSegments)
from rmt_cli.stories import StoryPool
from rmt_cli.task_spec import TaskSpec

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
BATCH_LENGTH_CODE = 3  # seeds the one segment count of a batch (batch_segments); not a split
PRIMED_NOISE_CODE = 4  # seeds a stage's noise-primed rows and the noise they read (primed.py); not a split
MAX_REDRAWS = 1000  # stories drawn before a sample gives up on finding one that fits


def batch_segments(seed: int, position: int, segments: tuple[int, int]) -> tuple[int, int]:
    """One segment count drawn uniformly from segments=(lo, hi) for the whole training batch that starts at sample
    `position`, as (n, n): a pure function of (seed, position), so every process of a DDP run and a resumed run draw
    the same count for the same batch."""
    lo, hi = segments
    n = int(np.random.default_rng((seed, BATCH_LENGTH_CODE, position)).integers(lo, hi + 1))
    return n, n


@dataclass(frozen=True)
class TrainingMix:
    """How a curriculum stage draws its training samples beyond their length; the defaults draw them as validation
    and test samples are drawn."""

    facts_in_last: int | None = None  # facts in the last k segments (None: anywhere)
    confuser_share: float = 0.0  # share of noise windows drawn from those that name an answer
    multi_fact_share: float = 0.0  # share of stories whose question names someone or somewhere that 2+ facts name
    generated_share: float | None = None  # share of noise windows from generated text (None: as drawn from all)
    facts_before_question: bool = False  # no fact in the question's segment: the memory carries every fact to it
    confuser_answers: str = "natural"  # "natural": those windows drawn alike; "even": an answer first, then its window


@dataclass(frozen=True)
class PlacedFact:
    segment: int
    offset: int  # offset of the sentence start inside the segment's noise window
    tokens: np.ndarray
    story_index: int = -1  # which of the story's facts it is (-1: not from a story)


@dataclass(frozen=True)
class Sample:
    noise_starts: np.ndarray  # [n_segments] offsets into the corpus tokens; each window starts a sentence
    facts: tuple[PlacedFact, ...]
    question: np.ndarray
    label: int
    story: Story | None = None  # the story it tells, read only when asked about (facts_naming_question)

    @property
    def n_segments(self) -> int:
        return len(self.noise_starts)

    @cached_property
    def facts_naming_question(self) -> int:
        """2 when both of a qa4 story's facts name the place asked about (predictions.csv); 0 without a story."""
        return 0 if self.story is None else facts_naming_the_question(self.story)

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

    def resized(self, content_length: int) -> SampleFactory:
        """The same task, noise and tokenizer in segments of `content_length` tokens."""
        return SampleFactory(self.task, self.corpus, self.tokenizer, content_length)

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
        return np.unique(np.concatenate(self.confuser_windows_by_answer))

    @cached_property
    def confuser_windows_by_answer(self) -> list[np.ndarray]:
        """Per label, the starts of the noise windows in which that answer begins (empty where the noise never
        names it)."""
        tokens = self.corpus.tokens
        found = []
        for sequences in self.answer_spellings():
            begins = np.zeros(len(tokens) + 1, dtype=np.int64)  # begins[i + 1]: a spelling starts at token i
            for sequence in sequences:
                if len(sequence) <= len(tokens):
                    windows = np.lib.stride_tricks.sliding_window_view(tokens, len(sequence))
                    begins[1:len(windows) + 1] |= (windows == sequence).all(axis=1)
            seen = np.cumsum(begins)
            found.append(self.window_starts[seen[self.window_starts + self.content_length] > seen[self.window_starts]])
        return found

    @cached_property
    def confuser_windows_of_named_answers(self) -> list[np.ndarray]:
        """confuser_windows_by_answer without the answers the noise never names (what `even` draws among)."""
        return [windows for windows in self.confuser_windows_by_answer if len(windows)]

    def draw(self, rng: np.random.Generator, n_segments: int, split: str = "train",
             mix: TrainingMix = TrainingMix()) -> Sample:
        """One sample of n_segments; a training `mix` other than the default places its facts in the last k segments
        or before the question's segment (as far as the story fits them; an input of one segment holds them with
        the question), draws a share of the noise windows (on average) from generated text or from
        those that name an answer (`confuser_windows`), or a share of the stories from those whose question names
        someone or somewhere that several facts name."""
        story = self.pick_story(rng, split, n_segments, mix.multi_fact_share)
        from_generated = self.from_generated(rng, n_segments, mix.generated_share)
        noise_starts = self.draw_windows(
            rng, self.window_starts, n_segments, from_generated,
            lambda origin: NoGeneratedWindows(mix.generated_share or 0.0, origin, self.content_length))
        if mix.confuser_share:
            noise_starts = self.with_confusers(rng, noise_starts, mix.confuser_share, from_generated,
                                               mix.confuser_answers)
        question = self.encode(story.question)
        fact_tokens = [self.encode(fact) for fact in story.facts]
        budget = self.content_length - len(question) - sum(len(t) for t in fact_tokens)
        end = n_segments - 1 if mix.facts_before_question and n_segments > 1 else n_segments  # facts before `end`
        first = 0 if mix.facts_in_last is None else min(max(0, n_segments - mix.facts_in_last), end - 1)
        if budget >= 0:
            places = self.scatter(rng, noise_starts, len(fact_tokens), budget, first, end)
        else:
            places = self.spread(rng, noise_starts, [len(t) for t in fact_tokens], len(question), first, end)
        facts = tuple(PlacedFact(segment, offset, fact_tokens[i], i) for segment, offset, i in places)
        return Sample(noise_starts, facts, question, self.task.labels.index(story.answer), story)

    def pick_story(self, rng: np.random.Generator, split: str, n_segments: int, multi_fact_share: float) -> Story:
        """A story that fits n_segments; with `multi_fact_share`, that share of the stories (on average) is one whose
        question names someone or somewhere that several facts name ("What is west of the kitchen?" after two facts
        about the kitchen), so the fact that names it does not give the answer alone."""
        source = self.task.stories(split)
        if isinstance(source, StoryPool):
            self.check_pool(source, n_segments)
        wants_multi_fact = multi_fact_share > 0 and rng.random() < multi_fact_share  # no draw at 0: sets unchanged
        saw_multi_fact = False
        story: Story = source(rng)
        for _ in range(MAX_REDRAWS):
            # the story's names are read only when asked for (not for every validation and test sample)
            multi_fact = wants_multi_fact and facts_naming_the_question(story) > 1
            saw_multi_fact |= multi_fact
            if self.segments_needed(story) <= n_segments and (multi_fact or not wants_multi_fact):
                return story
            # A generated story longer than this input (or not of the kind wanted): draw another, so short inputs
            # hold the shorter stories.
            story = source(rng)
        if wants_multi_fact and not saw_multi_fact:
            raise NoMultiFactStories(self.task.name, multi_fact_share)
        raise StoriesDoNotFit(self.task.name, n_segments, self.content_length)

    def from_generated(self, rng: np.random.Generator, n_segments: int, share: float | None) -> np.ndarray | None:
        """Per segment, whether its noise window comes from generated text (corpus/generated.py), with probability
        `share`; None (and no draw) when the windows come from all the training noise alike: no share asked for,
        or noise without generated text (validation and test)."""
        if share is None or self.corpus.generated_from is None:
            return None
        return rng.random(n_segments) < share

    def draw_windows(self, rng: np.random.Generator, windows: np.ndarray, n: int, from_generated: np.ndarray | None,
                     missing: Callable[[str], Exception]) -> np.ndarray:
        """n starts drawn uniformly from `windows` (sorted); with `from_generated`, each from those in generated text
        where it is True and from those in the source text before it where False (`missing(origin)`: the error when
        the windows of an origin needed are none)."""
        if from_generated is None:
            return windows[rng.integers(len(windows), size=n)]
        boundary = self.corpus.generated_from
        assert boundary is not None  # from_generated is drawn only for noise with generated text
        split = int(np.searchsorted(windows, boundary))
        drawn = np.empty(n, dtype=windows.dtype)
        for chosen, part, origin in ((~from_generated, windows[:split], "source"),
                                     (from_generated, windows[split:], "generated")):
            if chosen.any():
                if len(part) == 0:
                    raise missing(origin)
                drawn[chosen] = part[rng.integers(len(part), size=int(chosen.sum()))]
        return drawn

    def with_confusers(self, rng: np.random.Generator, noise_starts: np.ndarray, share: float,
                       from_generated: np.ndarray | None = None, answers: str = "natural") -> np.ndarray:
        """A `share` of the windows (on average) replaced by windows that name an answer, each from the same text
        (source or generated) as the window it replaces when `from_generated` says which. `answers="natural"` draws
        them from every such window alike, so each answer as often as the noise names it; "even" draws an answer
        first, evenly among those the noise names, then a window that names it (a place the noise seldom names is
        then met as often as the one it names most)."""
        if len(self.confuser_windows) == 0:
            raise NoConfusers(share, self.task.labels)
        chosen = np.flatnonzero(rng.random(len(noise_starts)) < share)
        if answers == "even":
            named = self.confuser_windows_of_named_answers
            picks = rng.integers(len(named), size=len(chosen))  # each chosen window's answer
            pools = [(windows, chosen[picks == k]) for k, windows in enumerate(named)]
        else:
            pools = [(self.confuser_windows, chosen)]
        noise_starts = noise_starts.copy()
        for windows, rows in pools:
            noise_starts[rows] = self.draw_windows(rng, windows, len(rows),
                                                   None if from_generated is None else from_generated[rows],
                                                   lambda origin: NoConfusers(share, self.task.labels, origin))
        return noise_starts

    def segments_needed(self, story: Story) -> int:
        return minimum_segments(self.lengths(story), len(self.encode(story.question)), self.content_length)

    def lengths(self, story: Story) -> list[int]:
        return [len(self.encode(fact)) for fact in story.facts]

    def scatter(self, rng, noise_starts: np.ndarray, n_facts: int, budget: int, first: int,
                end: int) -> list[tuple[int, int, int]]:
        """(segment, offset, fact index) in input order for a story that fits one segment with `budget` tokens to
        spare: each fact in any segment from `first` up to `end` (excluded), at a sentence start that leaves room for
        the whole story and the question after it. An ordered task's facts take the places in story order, an
        order-free task's in drawing order."""
        if self.task.fact_position == "start":
            segments = np.zeros(n_facts, dtype=np.int64)
        else:
            segments = rng.integers(first, end, size=n_facts)
        drawn = []
        for segment in segments:
            sentence_starts = self.sentence_offsets(noise_starts[segment], budget)
            offset = 0 if self.task.fact_position == "start" else sentence_starts[rng.integers(len(sentence_starts))]
            drawn.append((int(segment), int(offset)))
        order = sorted(range(n_facts), key=drawn.__getitem__)
        return [(*drawn[j], i if self.task.ordered else j) for i, j in enumerate(order)]

    def spread(self, rng, noise_starts: np.ndarray, lengths: list[int], question: int, first: int,
               end: int) -> list[tuple[int, int, int]]:
        """(segment, offset, fact index) in input order for a story longer than one segment: the facts are dealt to
        segments from `first` up to `end` (excluded) in story order, as many per segment as fit (the last keeps room
        for the question; a story too long for them reaches back before `first`, or on past `end`), each at a
        sentence start; with fact_position=start the story opens the input and spills into the next segments."""
        n_segments = len(noise_starts)
        capacity = np.full(n_segments, self.content_length)
        capacity[-1] -= question
        story = np.arange(len(lengths)) if self.task.ordered else rng.permutation(len(lengths))
        lengths = [lengths[i] for i in story]
        if self.task.fact_position == "start":
            segments = pack(lengths, capacity)
        else:
            segments = fit(np.sort(rng.integers(first, end, size=len(lengths))), lengths, capacity)
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

    def noise_segments(self, rng: np.random.Generator, rows: int, n_segments: int) -> np.ndarray:
        """[n_segments, rows, content_length] tokens of noise alone (no fact, no question), each segment a window
        drawn uniformly from this factory's noise."""
        starts = self.window_starts[rng.integers(len(self.window_starts), size=(n_segments, rows))]
        return self.corpus.tokens[starts[..., None] + self._offsets]

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
                        mix: TrainingMix = TrainingMix()) -> Sample:
        """Training sample number `index`; its segment count is drawn uniformly from segments=(lo, hi)."""
        rng = np.random.default_rng((seed, SPLIT_CODES["train"], index))
        return self.draw(rng, int(rng.integers(segments[0], segments[1] + 1)), mix=mix)

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
