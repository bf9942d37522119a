"""Per-sample answers of a measured test set, with what the noise says about them.

A long input fails in two ways that accuracy alone does not tell apart: the memory loses the fact, or it takes
in a sentence of the noise that names another answer ("... walked into the garden ...") as if it were a fact.
Each row therefore counts how often the noise windows of its sample mention the right answer and the predicted
one: wrong answers that the noise mentions far more often than chance would say the second.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from rmt_cli.facts import facts_name
from rmt_cli.samples import Sample, SampleFactory

COLUMNS = ("segments", "sample", "answer", "predicted", "correct", "first_fact_segment", "last_fact_segment",
           "facts_naming_question", "facts_name_predicted", "noise_mentions_of_answer", "noise_mentions_of_predicted")


CHUNK = 1024  # noise windows read at once: a million-token sample is counted in a few arrays of ~2 MB


class MentionCounter:
    """Counts, per label, the occurrences of its spellings in a sample's noise windows (each window read as it lies
    in the corpus, before the facts go in; a spelling split across two windows does not count)."""

    def __init__(self, factory: SampleFactory):
        self.factory, self.n_labels = factory, len(factory.task.labels)
        single: dict[int, int] = {}
        self.multi: list[tuple[int, np.ndarray]] = []
        for label, sequences in enumerate(factory.answer_spellings()):
            for sequence in sequences:
                if len(sequence) == 1:
                    single.setdefault(int(sequence[0]), label)
                else:
                    self.multi.append((label, sequence))
        self.single_ids = np.array(sorted(single), dtype=np.int64)
        self.single_labels = np.array([single[token] for token in sorted(single)], dtype=np.int64)

    def __call__(self, sample: Sample) -> np.ndarray:
        counts = np.zeros(self.n_labels, dtype=np.int64)
        offsets = np.arange(self.factory.content_length)
        for first in range(0, sample.n_segments, CHUNK):
            windows = self.factory.corpus.tokens[sample.noise_starts[first:first + CHUNK, None] + offsets]
            if len(self.single_ids):
                hits = windows[np.isin(windows, self.single_ids)]
                counts += np.bincount(self.single_labels[np.searchsorted(self.single_ids, hits)],
                                      minlength=self.n_labels)
            for label, sequence in self.multi:
                counts[label] += occurrences(windows, sequence)
        return counts


def occurrences(windows: np.ndarray, sequence: np.ndarray) -> int:
    """How often `sequence` occurs inside the rows of `windows` [n, length]."""
    n, length = len(sequence), windows.shape[1]
    if length < n:
        return 0
    found = np.ones((windows.shape[0], length - n + 1), dtype=bool)
    for i, token in enumerate(sequence):
        found &= windows[:, i:length - n + 1 + i] == token
    return int(found.sum())


def prediction_rows(factory: SampleFactory, samples: list[Sample], predicted: np.ndarray) -> list[dict]:
    """One row per sample: its answer, the prediction (empty: a generated answer that is no label), whether they
    agree, where the first and the last fact lie (how far a story's facts are spread, and how long ago the last was
    read), how many facts name what the question asks about (2: finding the fact is not enough, its relation's
    direction answers), whether a fact names the prediction (empty without a story or a prediction), and how often
    the noise names the answer and the prediction."""
    count_mentions, labels = MentionCounter(factory), factory.task.labels
    rows = []
    for index, (sample, guess) in enumerate(zip(samples, predicted, strict=True)):
        mentions = count_mentions(sample)
        rows.append({"segments": sample.n_segments, "sample": index, "answer": labels[sample.label],
                     "predicted": labels[guess] if guess >= 0 else "", "correct": bool(guess == sample.label),
                     "first_fact_segment": min(sample.fact_segments, default=None),
                     "last_fact_segment": max(sample.fact_segments, default=None),
                     "facts_naming_question": sample.facts_naming_question,
                     "facts_name_predicted": None if sample.story is None or guess < 0
                     else facts_name(sample.story, labels[guess]),
                     "noise_mentions_of_answer": int(mentions[sample.label]),
                     "noise_mentions_of_predicted": int(mentions[guess]) if guess >= 0 else None})
    return rows


def write_predictions(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
