"""The results protocol's summary: mean, min and max over seeds, from run folders alone."""

import json

import pytest

from rmt_cli.errors import RuntimeFailure
from rmt_cli.reproduce import PLAN, seed_folder, table, write_summary

ACCURACY = {("memorize", 0): {1: 1.0, 8: 1.0}, ("memorize", 1): {1: 1.0, 8: 0.9},
            ("memorize", 2): {1: 0.95, 8: 0.5}}


def fake_protocol(out, accuracy=ACCURACY, seeds=(0, 1, 2)):
    out.mkdir(parents=True, exist_ok=True)
    (out / PLAN).write_text(json.dumps({"preset": "paper_minilm", "tasks": ["memorize"], "seeds": list(seeds),
                                        "segments": [1, 8], "samples": 20, "card": "NVIDIA H200",
                                        "command": "rmt reproduce run OUT", "started": "2026-12-01T00:00:00Z"}))
    for (task, seed), rows in accuracy.items():
        folder = seed_folder(out, task, seed)
        (folder / "extrapolate").mkdir(parents=True)
        (folder / "train").mkdir()
        (folder / "train.status.json").write_text(json.dumps({"exit_code": 0, "seconds": 60.0 * (seed + 1)}))
        (folder / "train" / "metrics.jsonl").write_text(json.dumps({"kind": "summary", "completed": True}) + "\n")
        (folder / "extrapolate" / "extrapolation.json").write_text(json.dumps(
            [{"segments": n, "tokens": 499 * n, "accuracy": a, "samples": 20} for n, a in rows.items()]))
    return out


def test_summary_gives_mean_min_max_and_every_seed(tmp_path):
    summary = write_summary(fake_protocol(tmp_path / "run"), tmp_path / "results")
    at8 = summary["tasks"]["memorize"]["lengths"]["8"]
    assert (at8["mean"], at8["min"], at8["max"]) == (80.0, 50.0, 100.0)
    assert at8["per_seed"] == {"0": 100.0, "1": 90.0, "2": 50.0} and at8["tokens"] == 3992
    assert summary["tasks"]["memorize"]["train_seconds"] == {"0": 60.0, "1": 120.0, "2": 180.0}
    assert summary["card"] == "NVIDIA H200"
    assert json.loads((tmp_path / "results" / "summary.json").read_text()) == summary
    assert (tmp_path / "results" / "accuracy_vs_length.png").stat().st_size > 10_000
    assert (tmp_path / "results" / "memorize" / "seed2" / "extrapolate_extrapolation.json").is_file()
    assert "| memorize | 98.3 (95.0–100.0) | 80.0 (50.0–100.0) | 2.0 min |" in table(summary)


def test_a_missing_seed_is_one_clear_error(tmp_path):
    accuracy = {key: rows for key, rows in ACCURACY.items() if key[1] != 1}
    with pytest.raises(RuntimeFailure, match="memorize seed 1 has no finished training"):
        write_summary(fake_protocol(tmp_path / "run", accuracy), tmp_path / "results")


def test_a_seed_whose_extrapolation_stopped_early_is_named(tmp_path):
    accuracy = {**ACCURACY, ("memorize", 2): {1: 0.95}}
    with pytest.raises(RuntimeFailure, match=r"memorize seed 2 has no result at \[8\] segments"):
        write_summary(fake_protocol(tmp_path / "run", accuracy), tmp_path / "results")
