"""The presets are what users run: each composes, and its curriculum trains at a tiny scale in-process."""

import json
import math

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rmt_cli import config_dir
from rmt_cli.experiment import build_experiment
from rmt_cli.curriculum import curriculum_stages
from rmt_cli.train import Trainer

PAPER_PRESETS = sorted(p.stem for p in (config_dir() / "experiment").glob("paper_minilm_*.yaml"))
# Every user-facing preset but smoke (tiny already), each shrunk onto a tiny backbone of its own layout.
PRESETS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml") if p.stem != "smoke")
TINY_BACKBONE = {"smollm2_memorize": "tiny-llama", "smollm2_qa1": "tiny-llama"}  # a decoder preset keeps a decoder
SHRINK = ["noise=synthetic", "segment.length=64", "trainer.batch_size=2",
          "trainer.eval_batch_size=4", "trainer.val_samples=4", "trainer.eval_every=1", "trainer.device=cpu"]


def shrunk(preset: str, *overrides: str):
    backbone = f"backbone={TINY_BACKBONE.get(preset, 'tiny')}"
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}", backbone, *SHRINK, *overrides])
    stages = OmegaConf.to_container(cfg.curriculum.stages)
    # The first and the last stage, one step each: the last stage carries each preset's special settings.
    OmegaConf.update(cfg, "curriculum.stages", [{**stages[0], "steps": 1}, {**stages[-1], "steps": 1}], merge=True)
    return cfg, stages


def test_there_is_a_paper_preset_per_task():
    assert PAPER_PRESETS == ["paper_minilm_detect", "paper_minilm_memorize", "paper_minilm_reasoning"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_trains_two_steps_at_tiny_scale(preset, tmp_path):
    cfg, full_stages = shrunk(preset)
    assert all(stage["steps"] >= 100 for stage in full_stages)  # the shipped recipe, not a shrunk one
    experiment = build_experiment(cfg, "cpu", with_training_data=True)
    Trainer(cfg, experiment, curriculum_stages(cfg), tmp_path).run()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["stage"] for line in lines if line["kind"] == "train"] == [1, 2]
    assert lines[-1]["kind"] == "summary" and lines[-1]["completed"] is True
    assert (tmp_path / "checkpoints" / "stage2-best" / "model.safetensors").is_file()


def test_detect_last_stage_trains_on_the_bf16_working_copy_past_its_bptt_window(tmp_path):
    """The variant of the detect preset that fits a shorter run: every step on the bf16 working copy, the segments
    before the 16-segment window on the bf16 prefix copy, revert_drop in the last stage."""
    cfg, _ = shrunk("paper_minilm_detect", "trainer.compute_dtype=bf16", "curriculum.stages.8.revert_drop=0.05")
    last = OmegaConf.to_container(cfg.curriculum.stages)[-1]
    assert last["bptt_segments"] == 16 and last["revert_drop"] == 0.05 and cfg.trainer.prefix_dtype == "bf16"
    OmegaConf.update(cfg, "curriculum.stages.1.segments", [18, 22])  # 2-6 segments before the window
    OmegaConf.update(cfg, "curriculum.stages.1.steps", 2)
    experiment = build_experiment(cfg, "cpu", with_training_data=True)
    Trainer(cfg, experiment, curriculum_stages(cfg), tmp_path).run()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = [line for line in lines if line["kind"] == "train" and line["stage"] == 2]
    assert trained and all(math.isfinite(line["loss"]) and line["grad_norm"] > 0 for line in trained)
    assert lines[-1]["kind"] == "summary" and lines[-1]["completed"] is True
