"""`rmt extrapolate`: accuracy of a trained model at a schedule of input lengths, up to millions of tokens.

Each length has its own fixed, seeded test set; samples stream segment by segment, so memory stays flat in
length. Rows are written to CSV/JSON as soon as they finish, so an interrupted run keeps what it measured; every
sample's answer goes to predictions.csv (see predictions.py).
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rmt_cli.experiment import apply_inference_settings
from rmt_cli.inference import correct, predict
from rmt_cli.predictions import prediction_rows, write_predictions
from rmt_cli.trained_run import command_run_folder, load_trained

QUARTERS = tuple(f"accuracy_fact_in_q{quarter}" for quarter in (1, 2, 3, 4))
QUESTION_KINDS = ("accuracy_one_fact_names_question", "accuracy_several_facts_name_question")
FROM_MEMORY = ("accuracy_facts_before_question", "accuracy_several_facts_before_question")
COLUMNS = ("segments", "tokens", "accuracy", "samples", "seconds", "samples_per_s", "tokens_per_s",
           "peak_gpu_mb", "rss_mb", *QUARTERS, *QUESTION_KINDS, *FROM_MEMORY)
BY_ANSWER = "accuracy_answer_"  # + a label: one column per answer of the task, after COLUMNS


def length_schedule(max_segments: int, explicit: list[int] | None = None) -> list[int]:
    """Powers of two up to max_segments, and max_segments itself; or the explicit list, sorted (both checked by
    config_check: whole numbers of at least 1)."""
    if explicit is not None:
        return sorted(set(explicit))
    lengths, n = [], 1
    while n < max_segments:
        lengths.append(n)
        n *= 2
    return lengths + [max_segments]


def resident_memory_mb() -> float:
    """Current (not peak) resident set size of this process."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def accuracy_by_fact_quarter(answered: np.ndarray, samples: list) -> dict:
    """Accuracy of the samples whose earliest fact lies in each quarter of the input (None: no sample there).

    Tells apart the two ways a long input fails: low in the first quarter, a fact is lost over a long hold; low in
    the last, a long fact-free prefix has spoilt the memory's ability to take a fact in.
    """
    quarters = np.array([min(3, 4 * min(s.fact_segments, default=0) // s.n_segments) for s in samples])
    return {name: accuracy_of(answered, quarters == q) for q, name in enumerate(QUARTERS)}


def accuracy_by_answer(answered: np.ndarray, samples: list, labels: list[str]) -> dict:
    """Accuracy of the samples whose right answer is each label (None: no such sample). A memory that discounts a
    place the noise keeps naming fails on that answer alone ("garden" in novels that name it hundreds of times per
    input), which the mean hides."""
    answers = np.array([s.label for s in samples])
    return {f"{BY_ANSWER}{label}": accuracy_of(answered, answers == index) for index, label in enumerate(labels)}


def weakest_answer(row: dict) -> str:
    """The progress line's `, weakest answer garden 0.0%` when one answer's samples do worse than the whole, else
    nothing."""
    by_answer = {key[len(BY_ANSWER):]: value for key, value in row.items()
                 if key.startswith(BY_ANSWER) and value is not None}
    if not by_answer:
        return ""
    label = min(by_answer, key=by_answer.__getitem__)
    return f", weakest answer {label} {by_answer[label]:.1%}" if by_answer[label] < row["accuracy"] else ""


def accuracy_of(answered: np.ndarray, chosen: np.ndarray) -> float | None:
    """The share answered right among the chosen samples (None: none chosen)."""
    return float(answered[chosen].mean()) if np.any(chosen) else None


def accuracy_by_question_kind(answered: np.ndarray, samples: list) -> dict:
    """Accuracy of the samples whose question names someone or somewhere that one fact names, and of those where
    several facts name it (None: no such sample). In reasoning (qa4) the second kind needs the relation's direction,
    not just the fact: a memory that keeps the places but not the direction answers the first and guesses the second.
    """
    several = np.array([s.facts_naming_question > 1 for s in samples])
    kinds = zip((False, True), QUESTION_KINDS, strict=True)
    return {name: accuracy_of(answered, several == kind) for kind, name in kinds}


def accuracy_from_memory(answered: np.ndarray, samples: list) -> dict:
    """Accuracy of the samples whose every fact lies before the question's segment, so that only the memory can
    bring them to the question, and of those among them whose question several facts name (None: no such sample).
    In reasoning the second is where the memory must hold each relation's direction: with one fact read beside the
    question, the direction can come from that fact."""
    before = np.array([s.n_segments > 1 and max(s.fact_segments, default=0) < s.n_segments - 1 for s in samples])
    several = np.array([s.facts_naming_question > 1 for s in samples])
    return dict(zip(FROM_MEMORY, (accuracy_of(answered, before), accuracy_of(answered, before & several)),
                    strict=True))


def measure_length(experiment, n_segments: int, cfg) -> tuple[dict, list[dict]]:
    """The row of one length, and one row per sample of its test set."""
    data = experiment.eval_data
    samples = data.sample_set("test", cfg.task.eval_seed, n_segments, cfg.samples)
    cuda = experiment.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    predictions = predict(experiment, data, samples, cfg.batch_size, cfg.cuda_graphs)  # ends with a device-to-host copy
    seconds = time.perf_counter() - start
    tokens = n_segments * data.content_length
    answered = correct(predictions, samples)
    row = {"segments": n_segments, "tokens": tokens,
           "accuracy": float(answered.mean()),
           "samples": len(samples), "seconds": round(seconds, 4),
           "samples_per_s": round(len(samples) / seconds, 2),
           "tokens_per_s": round(len(samples) * n_segments * cfg.segment.length / seconds),
           "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
           "rss_mb": round(resident_memory_mb(), 1), **accuracy_by_fact_quarter(answered, samples),
           **accuracy_by_question_kind(answered, samples), **accuracy_from_memory(answered, samples),
           **accuracy_by_answer(answered, samples, list(data.task.labels))}
    return row, prediction_rows(data, samples, predictions)


def write_rows(rows: list[dict], run_dir: Path) -> None:
    with (run_dir / "extrapolation.csv").open("w", newline="") as file:
        by_answer = [key for key in rows[0] if key.startswith(BY_ANSWER)] if rows else []
        writer = csv.DictWriter(file, fieldnames=[*COLUMNS, *by_answer])
        writer.writeheader()
        writer.writerows(rows)
    (run_dir / "extrapolation.json").write_text(json.dumps(rows, indent=2))


def render(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("segments", "tokens", "accuracy", "samples/s", "tokens/s", "peak GPU MB", "RSS MB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['segments']:,}", f"{row['tokens']:,}", f"{row['accuracy']:.1%}",
                      f"{row['samples_per_s']:,.1f}", f"{row['tokens_per_s']:,}",
                      "-" if row["peak_gpu_mb"] is None else f"{row['peak_gpu_mb']:,.0f}", f"{row['rss_mb']:,.0f}")
    return table


def trained_segments(meta: dict) -> int:
    return int(meta["max_segments"])


def extrapolate_from_config(cfg) -> None:
    from rmt_cli.plots import plot_extrapolation

    lengths = length_schedule(cfg.max_segments, cfg.segments)
    cfg, meta, folder, experiment = load_trained(cfg)
    apply_inference_settings(experiment.model, cfg)
    run_dir = command_run_folder(cfg)
    title = f"{cfg.task.name}: {folder}"
    rows: list[dict] = []
    answers: list[dict] = []
    console = Console()
    try:
        with Live(render(rows, title), console=console, auto_refresh=False,
                  transient=not console.is_terminal) as live:
            for n_segments in lengths:
                row, per_sample = measure_length(experiment, n_segments, cfg)
                rows.append(row)
                answers += per_sample
                write_rows(rows, run_dir)
                write_predictions(answers, run_dir / "predictions.csv")
                live.update(render(rows, title), refresh=True)
                if not console.is_terminal:
                    row = rows[-1]
                    print(f"{row['segments']} segments ({row['tokens']:,} tokens): accuracy {row['accuracy']:.1%}"
                          f"{weakest_answer(row)}, {row['tokens_per_s']:,} tokens/s, peak GPU {row['peak_gpu_mb']} MB, "
                          f"RSS {row['rss_mb']} MB", flush=True)
    finally:
        if rows:
            plot_extrapolation(rows, trained_segments(meta), experiment.eval_data.content_length,
                               run_dir / "extrapolation.png", title=f"{cfg.task.name}, trained on "
                               f"≤ {trained_segments(meta)} segments", chance=1 / len(experiment.task.labels))
            console.print(f"wrote {len(rows)} rows to {run_dir}/extrapolation.csv, .json and .png, and every "
                          f"sample's answer to predictions.csv")
