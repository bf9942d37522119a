"""`rmt retention`: how long a trained memory keeps a fact, and whether a long input stops it taking one in.

One pass over each test sample of N segments asks the sample's question at probe points along the input: after
segment t, its question segment (the last one: noise and the question) is read with the memory as it stands, so a
sample answers at about twenty lengths for the cost of one input and one segment per probe. Each answer is filed by
two counts: `before`, the segments of input before the (first) fact, and `held`, the segment boundaries that fact
has crossed when the question is read. At one length extrapolation's quarters confound them (before + held = N);
here they come apart. Accuracy that falls with `held` whatever `before` is forgetting; accuracy that falls with
`before` at the same `held` is a memory that, after long noise, no longer takes a fact in.

Beside each sample runs its twin: the same input with the answer swapped for another label in every fact that names
it. How far apart the two memories are (`signal`: the distance between them over the size of the sample's) is the
answer's trace in memory, read or not. Where the memory has let the fact go, or never took it in, the two memories
are the same (signal 0: the noise alone decides the state); so each bin reports the share of answers whose memory
still holds the answer (signal at least SIGNAL_FLOOR) beside their accuracy. An answer in memory that is read wrong
is a fact kept where the reader cannot find it; one not in memory right after a late fact, a fact never taken in.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rmt_cli.batches import BatchPlan, step_tokens
from rmt_cli.inference import to_device
from rmt_cli.samples import PlacedFact, Sample, SampleFactory

CSV_COLUMNS = ("sample", "label", "before", "last_fact", "read_segments", "held", "predicted", "correct", "signal")
BIN_BASE = 4  # bins of `before` and `held`: 0, 1-3, 4-15, 16-63, ... segments
# A memory holds the answer where it differs from its twin's by at least this share of its size. Memories that have
# forgotten it are the same to the last bit on a CPU; the floor leaves room for rounding in bf16 on a GPU, far below
# the 0.1-5 of a memory that holds it.
SIGNAL_FLOOR = 0.01


def probe_points(n_segments: int, count: int) -> list[int]:
    """Segments t (0-based) after which the question is asked: up to `count` points spread evenly on a log scale
    over 0 .. n-2, always with n-2 (then the question segment ends the whole input, as in `rmt extrapolate`)."""
    last = n_segments - 2
    if last < 0:
        return []
    if count <= 1:
        return [last]
    points = np.round(np.geomspace(1, last + 1, count)).astype(int) - 1
    return sorted(set(points.tolist()) | {last})


def answer_twin(factory: SampleFactory, sample: Sample) -> Sample | None:
    """The same input with the answer swapped, in every fact that names it, for the first other label (in the
    task's order, after the answer) that its story does not name; None where no fact names the answer (a yes/no
    answer, a count) or every label is named."""
    story = sample.story
    if story is None:
        return None
    labels = factory.task.labels
    answer = re.compile(rf"\b{re.escape(labels[sample.label])}\b")
    if not any(answer.search(fact) for fact in story.facts):
        return None
    named = " ".join((*story.facts, story.question))
    others = (labels[(sample.label + k) % len(labels)] for k in range(1, len(labels)))
    other = next((label for label in others if not re.search(rf"\b{re.escape(label)}\b", named)), None)
    if other is None:
        return None
    swapped = {tuple(factory.encode(fact).tolist()): factory.encode(answer.sub(other, fact)) for fact in story.facts}
    facts = tuple(PlacedFact(f.segment, f.offset, swapped.get(tuple(f.tokens.tolist()), f.tokens), f.story_index)
                  for f in sample.facts)
    return replace(sample, facts=facts, label=labels.index(other), story=None)


def answered_from(sample: Sample, t: int) -> bool:
    """Whether the answer read after segment t counts: every fact read before the question segment, or t is the
    last probe (the whole input, whose last segment may hold a fact beside the question)."""
    return max(sample.fact_segments, default=0) <= t or t == sample.n_segments - 2


def held_segments(sample: Sample, t: int) -> int:
    """Segment boundaries the first fact has crossed when the question segment after segment t is read."""
    return t + 1 - min(sample.fact_segments, default=0)


def relative_distance(memory: torch.Tensor, twin: torch.Tensor) -> np.ndarray:
    """Per row, |memory - twin| / |memory| over all memory vectors (fp32)."""
    memory, twin = memory.float().flatten(1), twin.float().flatten(1)
    return ((memory - twin).norm(dim=1) / memory.norm(dim=1).clamp_min(1e-12)).cpu().numpy()


@torch.inference_mode()
def trace(experiment, factory: SampleFactory, samples: list[Sample], probes: list[int], first_index: int = 0,
          progress: Callable[[int], None] | None = None) -> list[dict]:
    """One row per (sample, probe whose answer counts): the answer read there and the answer's signal in memory.

    The samples (all of one length) and their twins run as one batch, segment by segment; at each probe the
    samples' question segments are read with their memory (twins are not asked). `progress(t)` is told of every
    segment read."""
    model, device = experiment.model, experiment.device
    was_training = model.training
    model.eval()
    twins = [answer_twin(factory, sample) for sample in samples]
    twin_row = {}
    inputs = list(samples)
    for index, twin in enumerate(twins):
        if twin is not None:
            twin_row[index] = len(inputs)
            inputs.append(twin)
    # Every input has the same length, so the right-aligned plan keeps their order and its steps are segment t of each.
    plan = BatchPlan.right_aligned(inputs)
    questions = to_device(step_tokens(factory, plan, plan.n_steps - 1)[:len(samples)], device)
    memory = model.start_memory(len(inputs))
    rows: list[dict] = []
    probe_set = set(probes)
    with experiment.autocast():
        for t in range(max(probes, default=-1) + 1):
            tokens = to_device(step_tokens(factory, plan, t), device)
            memory, _, _ = model.read_segment(memory, tokens)
            if progress is not None:
                progress(t)
            if t not in probe_set:
                continue
            predicted = experiment.head.predict(model, [questions], memory=memory[:len(samples)]).cpu().numpy()
            signal: dict[int, float] = {}
            if twin_row:
                distance = relative_distance(memory[list(twin_row)], memory[list(twin_row.values())])
                signal = dict(zip(twin_row, distance.tolist(), strict=True))
            for i, sample in enumerate(samples):
                if answered_from(sample, t):
                    rows.append(answer_row(first_index + i, sample, t, int(predicted[i]), signal.get(i)))
    model.train(was_training)
    return rows


def answer_row(index: int, sample: Sample, t: int, predicted: int, signal: float | None) -> dict:
    return {"sample": index, "label": sample.label, "before": min(sample.fact_segments, default=0),
            "last_fact": max(sample.fact_segments, default=0), "read_segments": t + 2,
            "held": held_segments(sample, t), "predicted": predicted, "correct": predicted == sample.label,
            "signal": None if signal is None else round(float(signal), 6)}


def bin_of(count: int) -> int:
    """Bin number of a segment count: 0 for 0, then k for BIN_BASE^(k-1) <= count < BIN_BASE^k."""
    k = 0
    while count >= BIN_BASE ** k:
        k += 1
    return k


def bin_label(k: int) -> str:
    if k == 0:
        return "0"
    lo, hi = BIN_BASE ** (k - 1), BIN_BASE ** k - 1
    return str(lo) if lo == hi else f"{lo}-{hi}"


def summarise(rows: list[dict]) -> dict:
    """Per bin of `before` and of `held`: the answers, their accuracy, and of those with a twin the share whose memory
    holds the answer (`in_memory`) and the median signal (both None: no twin)."""
    cells: dict[tuple[int, int], list[dict]] = {}
    for row in rows:
        cells.setdefault((bin_of(row["before"]), bin_of(row["held"])), []).append(row)
    table: dict[str, dict[str, dict]] = {}
    for (before, held), members in sorted(cells.items()):
        signals = [row["signal"] for row in members if row["signal"] is not None]
        table.setdefault(bin_label(before), {})[bin_label(held)] = {
            "answers": len(members),
            "accuracy": round(float(np.mean([row["correct"] for row in members])), 4),
            "in_memory": round(float(np.mean([v >= SIGNAL_FLOOR for v in signals])), 4) if signals else None,
            "signal": round(float(np.median(signals)), 6) if signals else None}
    return table


def held_labels(table: dict) -> list[str]:
    """The `held` bins present in a summary, in order."""
    found = {label for row in table.values() for label in row}
    return sorted(found, key=lambda label: int(label.split("-")[0]))  # each bin's label starts with its first count


def render(table: dict, title: str, value: str) -> Table:
    """A summary as a table: a row per bin of `before`, a column per bin of `held`; `value` accuracy or in_memory."""
    columns = held_labels(table)
    shown = Table(title=title)
    shown.add_column("fact after segments", justify="right")
    for label in columns:
        shown.add_column(f"held {label}", justify="right")
    for before, row in table.items():
        cells = []
        for label in columns:
            cell = row.get(label)
            if cell is None or cell[value] is None:
                cells.append("")
            elif value == "accuracy":
                cells.append(f"{cell['accuracy']:.0%} ({cell['answers']})")
            else:
                cells.append(f"{cell[value]:.0%}")
        shown.add_row(before, *cells)
    return shown


def write_results(run_dir: Path, report: dict, rows: list[dict]) -> None:
    (run_dir / "retention.json").write_text(json.dumps(report, indent=1))
    with (run_dir / "retention.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


class ProgressLines:
    """A line at most every 30 s while a batch is traced (inputs of thousands of segments take minutes)."""

    def __init__(self, console: Console, n_segments: int, batches: int, start: float):
        self.console, self.n_segments, self.batches, self.start = console, n_segments, batches, start
        self.batch, self.said = 0, start

    def __call__(self, t: int) -> None:
        now = time.perf_counter()
        if now - self.said >= 30:
            self.said = now
            self.console.print(f"batch {self.batch} of {self.batches}: {t + 1:,} of {self.n_segments - 1:,} segments "
                               f"read ({now - self.start:.0f} s)")


def retention_from_config(cfg) -> None:
    """Everything `rmt retention` does, from the composed config of the command (`--checkpoint` and overrides)."""
    from rmt_cli.plots import plot_retention
    from rmt_cli.trained_run import command_run_folder, load_trained

    cfg, meta, folder, experiment = load_trained(cfg)
    run_dir = command_run_folder(cfg)
    factory = experiment.eval_data
    n_segments = cfg.max_segments
    probes = probe_points(n_segments, cfg.probes)
    samples = factory.sample_set("test", cfg.task.eval_seed, n_segments, cfg.samples)
    console = Console()
    title = f"{cfg.task.name}, {n_segments} segments: {folder}"
    rows: list[dict] = []
    start = time.perf_counter()
    report: dict = {}
    batches = range(0, len(samples), cfg.batch_size)
    progress = ProgressLines(console, n_segments, len(batches), start)
    for number, first in enumerate(batches, start=1):
        progress.batch = number
        rows += trace(experiment, factory, samples[first:first + cfg.batch_size], probes, first, progress)
        final = [row for row in rows if row["read_segments"] == n_segments]
        report = {"checkpoint": str(folder), "task": cfg.task.name, "segments": n_segments,
                  "content_length": factory.content_length, "trained_segments": int(meta["max_segments"]),
                  "samples": len(final), "probes": [t + 2 for t in probes],
                  "chance": 1 / len(experiment.task.labels),
                  "accuracy_whole_input": round(float(np.mean([row["correct"] for row in final])), 4),
                  "seconds": round(time.perf_counter() - start, 1), "table": summarise(rows)}
        write_results(run_dir, report, rows)
        console.print(f"{len(final)} of {len(samples)} samples traced ({report['seconds']:.0f} s); "
                      f"accuracy on the whole input {report['accuracy_whole_input']:.1%}")
    plot_retention(report, run_dir / "retention.png", title=f"{cfg.task.name}, inputs of {n_segments} segments")
    console.print(f"{title}: answers by the segments before the fact (rows) and the segments it was held (columns)")
    console.print(render(report["table"], "accuracy (answers)", "accuracy"))
    if any(cell["in_memory"] is not None for row in report["table"].values() for cell in row.values()):
        console.print(render(report["table"], "answer still in memory (differs from its twin's)", "in_memory"))
    console.print(f"wrote retention.json, retention.csv and retention.png to {run_dir}")
