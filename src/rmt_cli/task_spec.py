"""What a task puts into an input: where its stories come from (a generator, a bAbI file, BABILong), its answer
labels, and where its facts go."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from rmt_cli.babi import babi_split_files, read_babi
from rmt_cli.babilong import load_babilong
from rmt_cli.stories import GENERATORS, LABELS, ORDER_FREE, StoryPool


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
