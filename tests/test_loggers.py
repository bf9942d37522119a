import json

import pytest
from hydra import compose, initialize_config_dir

from rmt_cli import config_dir, loggers
from rmt_cli.errors import UsageError


def composed(*overrides):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def lines(run_dir, kind):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row["kind"] == kind]


def test_training_logs_gradient_norms_and_records_where_it_ran(smoke_run_dir):
    train = lines(smoke_run_dir, "train")
    assert all({"loss", "lr", "grad_norm", "tokens_per_s"} <= set(row) and row["grad_norm"] > 0 for row in train)
    assert all(row["model_tflops_per_s"] > 0 and "mfu" not in row and "peak_gpu_mb" not in row for row in train)
    info = json.loads((smoke_run_dir / "run_info.json").read_text())
    assert len(info["git"]["commit"]) == 40  # the tests run from a checkout
    assert info["packages"]["torch"] and info["packages"]["transformers"] and info["packages"]["rmt"]
    assert info["device"] == "cpu" and info["finished"] is True


def test_tensorboard_event_file_reads_back(smoke_run_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(smoke_run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/model_tflops_per_s",
            "val/accuracy", "val/accuracy_stage1", "val/accuracy_stage2"} <= tags
    train = lines(smoke_run_dir, "train")
    losses = events.Scalars("train/loss")
    assert [event.value for event in losses] == pytest.approx([row["loss"] for row in train])
    # Stage 2's steps follow stage 1's 4 steps on one axis.
    assert [event.step for event in losses] == [row["step"] + 4 * (row["stage"] - 1) for row in train]
    assert "run_info" in str(events.Tags()["tensors"])


def test_wandb_offline_writes_a_run_folder_without_an_account(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_API_KEY", "")
    cfg = composed("experiment=smoke", "logger=[jsonl,wandb]")
    with loggers.open_metrics(cfg, tmp_path, [4, 4], {"device": "cpu"}) as metrics:
        metrics.write(kind="train", stage=1, step=1, segments="1", loss=1.5, lr=1e-3, grad_norm=2.0)
        metrics.write(kind="val", stage=2, step=4, segments=2, val_accuracy=0.5)
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_logger_without_its_package_is_one_clear_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UsageError, match=r"logger=wandb needs the wandb package: pip install 'rmt-cli\[wandb\]'"):
        loggers.chosen(composed("logger=[jsonl,wandb]"))
    assert set(loggers.chosen(composed())) == {"jsonl"}


def test_model_flops_and_mfu_follow_the_tokens_per_second():
    import torch
    from transformers import BertConfig

    from rmt_cli.flops import forward_flops, shape_from_hf_config
    from rmt_cli.throughput import TrainingFlops, peak_flops

    assert peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("NVIDIA H200") == 989.4e12
    assert peak_flops("NVIDIA GeForce RTX 4090") is None
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    flops = TrainingFlops(config, 512, torch.device("cpu"))
    per_position = 3 * forward_flops(shape_from_hf_config(config), 512, "layers") / 512
    assert flops.fields(1e6) == {"model_tflops_per_s": round(per_position * 1e6 / 1e12, 6)}
    flops.peak = 2 * peak_flops("NVIDIA H200")  # two processes on H200s
    assert flops.fields(1e6)["mfu"] == round(per_position * 1e6 / (2 * 989.4e12), 4)


def test_a_resumed_run_replaces_the_tensorboard_events_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = composed("experiment=smoke", "logger=[jsonl,tensorboard]")
    with loggers.open_metrics(cfg, tmp_path, [4, 4], {}) as metrics:
        for step in (1, 2, 3, 4):
            metrics.write(kind="train", stage=1, step=step, segments="1", loss=float(step))
    resumed = loggers.open_metrics(cfg, tmp_path, [4, 4], {})
    resumed.truncate(2)  # as Trainer.resume does: the checkpoint was taken after step 2
    with resumed:
        for step in (3, 4):
            resumed.write(kind="train", stage=1, step=step, segments="1", loss=10.0 * step)
        resumed.write(kind="train", stage=2, step=1, segments="2", loss=50.0)
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Scalars("train/loss")
    assert [(event.step, event.value) for event in events] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0)]
