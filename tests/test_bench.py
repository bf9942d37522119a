"""bench/bench_engine.py at toy sizes on CPU (every part runs, the JSON keeps its keys) and bench/agreement.py on a
smoke run (the fast inference path predicts what `rmt eval` with the same switches predicts)."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
# One thread: on a shared CPU, torch's two-thread kernels can wait on each other for most of a toy forward.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def bench_module(name: str):
    """A module of bench/ (a folder of scripts, not a package), imported by name."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def run(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)


def test_bench_help_lists_the_parts_and_the_quick_mode():
    result = run(BENCH / "bench_engine.py", "--help")
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "SmolLM2-135M" in result.stdout


@pytest.mark.slow
def test_quick_bench_runs_every_part_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    result = run(BENCH / "bench_engine.py", "--quick", "--out", out)
    assert result.returncode == 0, result.stderr
    bench = json.loads(out.read_text())
    tiny = bench["tiny"]
    paths = ("", "_graph", "_bf16", "_bf16_graph")
    a_paths = (*paths, "_bf16_fused", "_bf16_fused_graph")  # the tiny geometry is BERT-shaped: fused blocks too
    assert {"plain_tok_s", "plain_bf16_tok_s", "ratio_plain_bf16"} | {f"ratio{p}" for p in a_paths} <= set(tiny["a"])
    assert all(tiny["a"][f"ratio{p}"] > 0 for p in a_paths)
    assert {f"alone{p}_s" for p in paths} | {"amortised_s", "amortised_bf16_s"} <= set(tiny["c"])
    assert {(row["weights"], row["batch"]) for row in tiny["g"]} == {(w, b) for w in ("fp32", "bf16") for b in (1, 2)}
    assert all(row["graph_flash_ms_per_segment"] is None or row["graph_flash_ms_per_segment"] > 0 for row in tiny["g"])
    assert all(row["backbone_eager_ms"] > 0 and row["linear_eager_ms"] > 0 and row["linear_graph_ms"] is None
               for row in tiny["g"])  # no graphs on the CPU
    assert all(row["fused_blocks"] for row in tiny["f"])  # part t's rows with the blocks fused for training
    for rows in (tiny["t"], tiny["f"], bench["tiny-llama"]["s"]):
        assert {(r["segments"], r["checkpointing"], r["fused_adamw"]) for r in rows} == {
            (s, c, f) for s in (1, 2) for c in (False, True) for f in (False, True)}
        assert [(r["segments"], r["fused_adamw"]) for r in rows if r["reentrant"]] == [(1, True), (2, True)]
        assert all(r["tok_s"] > 0 for r in rows)
    mpnet = bench["r"]  # an MPNet geometry on transformers' eager attention and on SDPA with the bias as its mask
    assert mpnet["geometry"] == "tiny" and mpnet["ratio_extrapolate"] > 0
    assert [(r["attention"], r["segments"]) for r in mpnet["train"]] == [(a, s) for a in ("eager", "sdpa")
                                                                         for s in (1, 2)]
    assert all(r["tok_s"] > 0 and r["speedup"] > 0 for r in mpnet["train"])
    mixed = tiny["m"]  # a 1-4-segment stage's counts drawn per sample and per batch, over the same two batches
    assert [(r["lengths_per"], r["compute_dtype"], r["reentrant"]) for r in mixed] == [
        ("sample", "fp32", False), ("sample", "fp32", True), ("batch", "fp32", False), ("batch", "fp32", True),
        ("batch", "bf16", False), ("batch", "bf16", True)]  # per batch also on the bf16 working copy
    assert all(r["tok_s"] > 0 and r["batches"] == 2 and r["batch"] == 2 for r in mixed) and mixed[0]["speedup"] == 1
    assert all(r["device_busy_s"] is None and r["busy_tok_s"] is None for r in mixed)  # no card to profile
    per_batch = [r for r in mixed if r["lengths_per"] == "batch"]
    assert all(r["segment_steps"] * r["batch"] == r["row_segments"] for r in per_batch)  # no row shorter than its step
    assert [(r["segments"], r["bptt_segments"], r["prefix_dtype"]) for r in tiny["p"]] == [(4, 2, "fp32"),
                                                                                           (4, 2, "bf16")]
    assert all(r["tok_s"] > 0 for r in tiny["p"]) and tiny["p"][1]["speedup"] > 0
    assert [(r["segments"], r["fused_blocks"], r["compute_dtype"]) for r in tiny["w"]] == [
        (s, fused, dtype) for s in (1, 2) for fused in (False, True) for dtype in ("fp32", "bf16")]
    assert all(r["tok_s"] > 0 and r["speedup"] > 0 for r in tiny["w"])
    assert [r["speedup"] for r in tiny["w"] if not r["fused_blocks"] and r["compute_dtype"] == "fp32"] == [1.0, 1.0]
    decoder_copy = bench["tiny-llama"]["v"]  # the decoder on its bf16 working copy, beside its fp32 weights
    assert [(r["segments"], r["compute_dtype"]) for r in decoder_copy] == [(1, "fp32"), (1, "bf16"), (2, "fp32"),
                                                                           (2, "bf16")]
    assert all(r["tok_s"] > 0 for r in decoder_copy) and decoder_copy[3]["speedup"] > 0
    fused_norms = bench["tiny-llama"]["v_fused_norms"]
    assert [(r["segments"], r["compute_dtype"]) for r in fused_norms] == [(1, "fp32"), (1, "bf16"), (2, "fp32"),
                                                                          (2, "bf16")]
    assert bench["tiny"]["b"]["speedup"] > 0 and bench["d"]["step_gather_tok_s"] > 0
    report = run(BENCH / "report.py", out)
    assert report.returncode == 0, report.stderr
    assert "bf16 weights + CUDA graphs" in report.stdout and "(g) weights" in report.stdout
    assert "fused blocks + CUDA graphs" in report.stdout
    assert "(s) decoder train tok/s" in report.stdout
    assert "| tiny-llama (batch 2) | 2 | yes | yes | no |" in report.stdout
    assert "| tiny (batch 2) | 4, 2 | bf16 copy |" in report.stdout
    assert "| tiny (batch 2) | 2 | bf16 working copy |" in report.stdout
    assert "| tiny (batch 2) | 2 | bf16 working copy, fused blocks |" in report.stdout
    assert "| tiny (batch 2, 2 batches) | 1-4 | batch | reentrant |" in report.stdout
    assert "| tiny (batch 2) | 2 | yes, reentrant | fused |" in report.stdout  # part f beside part t's same row


@pytest.mark.slow
def test_parts_a_m_and_w_time_compiled_blocks_too(tmp_path):
    out = tmp_path / "bench.json"
    result = run(BENCH / "bench_engine.py", "--quick", "--parts", "a,m,w", "--compile", "--out", out)
    assert result.returncode == 0, result.stderr
    tiny = json.loads(out.read_text())["tiny"]
    assert tiny["a"]["recurrent_bf16_compiled_tok_s"] > 0 and tiny["a"]["ratio_bf16_compiled"] > 0
    assert [(r["lengths_per"], r["reentrant"], r["compiled"]) for r in tiny["m"] if r["compute_dtype"] == "fp32"] == [
        (p, r, c) for c in (False, True) for p in ("sample", "batch") for r in (False, True)]
    assert all(not r["compiled"] for r in tiny["m"] if r["compute_dtype"] == "bf16")
    assert all(r["tok_s"] > 0 and r["speedup"] > 0 for r in tiny["m"])
    assert [(r["segments"], r["fused_blocks"], r["compiled"], r["compute_dtype"]) for r in tiny["w"]] == [
        (s, fused, compiled, dtype) for s in (1, 2)
        for fused, compiled in ((False, False), (True, False), (False, True))
        for dtype in ("fp32", "bf16")]  # part w also on compiled blocks, the working copy copying them
    assert all(r["tok_s"] > 0 and r["speedup"] > 0 for r in tiny["w"])
    report = run(BENCH / "report.py", out).stdout
    assert "| batch | reentrant, compiled blocks |" in report
    assert "| tiny (batch 2) | 2 | bf16 working copy, compiled blocks |" in report


@pytest.mark.slow
def test_compiled_training_rows_and_the_profile_of_the_decoder(tmp_path):
    out = tmp_path / "bench.json"
    result = run(BENCH / "bench_engine.py", "--quick", "--parts", "s", "--train-segments", "1", "--compile",
                 "max-autotune-no-cudagraphs", "--profile", "--out", out)
    assert result.returncode == 0, result.stderr
    decoder = json.loads(out.read_text())["tiny-llama"]
    rows = decoder["s"]
    assert len(decoder["s_profile"]) == 20 and all(r["calls"] > 0 for r in decoder["s_profile"])
    assert "top ops" in run(BENCH / "report.py", out).stdout
    assert [(r["fused_adamw"], r["compiled"], r["compile_mode"]) for r in rows if not r["checkpointing"]] == [
        (False, False, None), (True, False, None), (True, True, "max-autotune-no-cudagraphs")]
    assert all(r["tok_s"] > 0 for r in rows)


def test_report_of_a_run_before_the_fast_paths_shows_the_tables_it_always_had():
    report = run(BENCH / "report.py", BENCH.parent / "results" / "bench" / "h200.json")
    assert report.returncode == 0, report.stderr
    assert "| minilm (batch 32) | 8 | yes | 837,868 | 6.6% | 2,286 |" in report.stdout
    assert "fused AdamW" not in report.stdout and "(g) weights" not in report.stdout


@pytest.mark.slow
def test_agreement_of_the_fast_path_on_a_smoke_run(tmp_path):
    run_dir = tmp_path / "run"
    trained = run("-m", "rmt_cli", "train", "experiment=smoke", f"hydra.run.dir={run_dir}")
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "agreement.json"
    result = run(BENCH / "agreement.py", run_dir, "--segments", "1,3", "--samples", "16", "--batch-size", "8",
                 "--out", out)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(row["segments"], row["samples"]) for row in rows] == [(1, 16), (3, 16)]
    assert all(row["agreement"] >= 0.75 for row in rows)
    evaluated = run("-m", "rmt_cli", "eval", "--checkpoint", run_dir, "--samples", "16", "task.segments=3",
                    "inference_dtype=bf16", "graph_max_rows=null", f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["accuracy"] == rows[1]["fast_accuracy"]
    compiled = run("-m", "rmt_cli", "eval", "--checkpoint", run_dir, "--samples", "16", "task.segments=3",
                   "compile_blocks=true", f"hydra.run.dir={tmp_path / 'compiled'}")
    assert compiled.returncode == 0, compiled.stderr
    assert json.loads((tmp_path / "compiled" / "eval.json").read_text())["accuracy"] == rows[1]["plain_accuracy"]


def write_predictions(path: Path, rows: list[tuple[int, int, str, str]]) -> Path:
    lines = ["segments,sample,answer,predicted,correct,first_fact_segment,last_fact_segment,"
             "facts_naming_question,noise_mentions_of_answer,noise_mentions_of_predicted"]
    lines += [f"{segments},{sample},{answer},{predicted},{answer == predicted},0,0,1,0,0"
              for segments, sample, answer, predicted in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_predictions_counts_accuracy_and_agreement_per_length(tmp_path):
    plain = write_predictions(tmp_path / "plain.csv", [(8, 0, "garden", "garden"), (8, 1, "office", "kitchen"),
                                                       (64, 0, "garden", "office"), (64, 1, "hallway", "hallway")])
    fast = write_predictions(tmp_path / "fast.csv", [(8, 0, "garden", "garden"), (8, 1, "office", "office"),
                                                     (64, 0, "garden", "office"), (64, 1, "hallway", "hallway"),
                                                     (512, 0, "garden", "garden")])
    out = tmp_path / "agreement.json"
    result = run(BENCH / "compare_predictions.py", plain, fast, "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == [
        {"segments": 8, "samples": 2, "plain_accuracy": 0.5, "fast_accuracy": 1.0, "agreement": 0.5},
        {"segments": 64, "samples": 2, "plain_accuracy": 0.5, "fast_accuracy": 0.5, "agreement": 1.0}]
    assert "same prediction on 50.0%" in result.stdout


def test_compare_predictions_refuses_test_sets_that_differ(tmp_path):
    plain = write_predictions(tmp_path / "plain.csv", [(8, 0, "garden", "garden"), (8, 1, "office", "office")])
    fast = write_predictions(tmp_path / "fast.csv", [(8, 0, "garden", "garden")])
    result = run(BENCH / "compare_predictions.py", plain, fast)
    assert result.returncode != 0 and "same --samples" in result.stderr and "Traceback" not in result.stderr
    missing = run(BENCH / "compare_predictions.py", tmp_path / "none.csv", fast)
    assert missing.returncode != 0 and "is not a file" in missing.stderr


def test_the_card_busy_time_of_part_m_counts_the_devices_events_only():
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    device_event_seconds = bench_module("bench_engine").device_event_seconds

    def event(device_type, us):
        return SimpleNamespace(device_type=device_type, time_range=SimpleNamespace(elapsed_us=lambda: us))

    events = [event(DeviceType.CPU, 9_000), event(DeviceType.CUDA, 1_500), event(DeviceType.CUDA, 500)]
    assert device_event_seconds(events) == 0.002  # the host's ops are not the card's time
    assert device_event_seconds([]) == 0


def test_a_failing_compiled_step_becomes_a_failed_row_and_an_eager_one_still_raises():
    import torch

    timed_compiled = bench_module("bench_engine").timed_compiled

    def overwritten():
        raise RuntimeError("Error: accessing tensor output of CUDAGraphs that has been overwritten by a subsequent "
                           "run. Stack trace: ...\nmore lines")

    assert timed_compiled(overwritten, torch.device("cpu"), "reduce-overhead") == (
        None, "Error: accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run. "
              "Stack trace: ...")
    with pytest.raises(RuntimeError, match="overwritten"):  # an eager step's error is a bug, not a row
        timed_compiled(overwritten, torch.device("cpu"), None)
    seconds, failure = timed_compiled(lambda: None, torch.device("cpu"), "reduce-overhead")
    assert seconds >= 0 and failure is None


def test_report_names_the_compile_mode_and_the_rows_that_failed(tmp_path, capsys):
    report = bench_module("report")
    row = {"segments": 8, "batch": 16, "fused_blocks": False, "mfu": None}
    bench = {"card": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "segment": 512, "memory": 10,
             "minilm": {"w": [{**row, "compute_dtype": "fp32", "compiled": False, "compile_mode": None, "step_s": 0.1,
                               "tok_s": 1_000_000.0, "speedup": 1.0},
                              {**row, "compute_dtype": "fp32", "compiled": True, "compile_mode": "reduce-overhead",
                               "step_s": 0.08, "tok_s": 1_250_000.0, "speedup": 1.25},
                              {**row, "compute_dtype": "bf16", "compiled": True, "compile_mode": "reduce-overhead",
                               "step_s": None, "tok_s": None, "speedup": None, "failed": "Error: accessing ..."}]},
             "tiny-llama": {"s": [{"segments": 8, "batch": 16, "checkpointing": False, "fused_adamw": True,
                                   "compiled": True, "compile_mode": "reduce-overhead", "tok_s": None, "mfu": None,
                                   "peak_mb": None, "failed": "Error: accessing ..."}]}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    report.main(str(path))
    out = capsys.readouterr().out
    assert "| minilm (batch 16) | 8 | fp32 weights, autocast, compiled blocks (reduce-overhead) | 1,250,000 |" in out
    failed = "| minilm (batch 16) | 8 | bf16 working copy, compiled blocks (reduce-overhead) | failed | - | - | - |"
    assert failed in out
    assert "| tiny-llama (batch 16) | 8 | no | yes | yes (reduce-overhead) | failed | - | - |" in out
