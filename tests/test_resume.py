import json
import signal
import subprocess
import time

import pytest
from helpers.cli import rmt, rmt_popen

from rmt_cli.loggers import WALL_CLOCK

STAGES = "curriculum.stages=[{segments:1,steps:12},{segments:2,steps:12},{segments:3,steps:12}]"


def metrics(run_dir):
    """metrics.jsonl without wall-clock fields, which differ between any two runs."""
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    result = rmt("train", "experiment=smoke", STAGES, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return metrics(run_dir)


def start_and_wait(run_dir, pattern):
    process = rmt_popen("train", "experiment=smoke", STAGES, f"hydra.run.dir={run_dir}", stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(run_dir.glob(pattern)) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    return process


@pytest.mark.slow  # a process of its own to kill, importing torch
def test_a_run_killed_mid_curriculum_resumes_to_the_same_metrics(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    process = start_and_wait(run_dir, "checkpoints/stage2-best")
    process.kill()
    process.wait()
    assert len(metrics(run_dir)) < len(uninterrupted), "the run finished before it could be killed"
    result = rmt("train", "experiment=smoke", STAGES, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    assert metrics(run_dir) == uninterrupted


@pytest.mark.slow  # a process of its own to signal, importing torch
def test_ctrl_c_saves_and_the_same_command_resumes(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    process = start_and_wait(run_dir, "checkpoints/last-*")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    result = rmt("train", "experiment=smoke", STAGES, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert metrics(run_dir) == uninterrupted


def test_a_finished_run_is_left_alone(tmp_path):
    run_dir = tmp_path / "run"
    assert rmt("train", "experiment=smoke", f"hydra.run.dir={run_dir}").returncode == 0
    before = (run_dir / "metrics.jsonl").read_text()
    result = rmt("train", "experiment=smoke", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0 and "nothing to resume" in result.stdout
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_last_checkpoint_holds_optimizer_scheduler_rng_and_position(tmp_path):
    from rmt_cli.checkpoint import load_trainer_state, resume_points

    run_dir = tmp_path / "run"
    assert rmt("train", "experiment=smoke", f"hydra.run.dir={run_dir}").returncode == 0
    kept = resume_points(run_dir / "checkpoints")
    assert len(kept) == 2  # trainer.keep_last
    state = load_trainer_state(kept[0])
    assert state["finished"] and state["next_sample"] == 2 * 4 * 4  # two stages of 4 steps, batch 4
    assert {"torch_rng", "summary", "metrics_lines", "optimizer", "scheduler"} <= set(state)


def test_a_damaged_latest_checkpoint_is_reported_and_the_previous_one_used(uninterrupted, tmp_path):
    from rmt_cli.checkpoint import resume_points

    run_dir = tmp_path / "run"
    assert rmt("train", "experiment=smoke", STAGES, f"hydra.run.dir={run_dir}").returncode == 0
    newest = resume_points(run_dir / "checkpoints")[0] / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a full disk
    result = rmt("train", "experiment=smoke", STAGES, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "is damaged (model.safetensors does not match its checksum); using the one before it" in result.stdout
    assert "resuming" in result.stdout and "Traceback" not in result.stderr
    assert metrics(run_dir) == uninterrupted



def test_a_time_limit_stops_mid_stage_and_the_same_command_continues_that_stage(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir
    from rmt_cli.experiment import build_experiment
    from rmt_cli.train import Trainer, curriculum_stages

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "trainer.device=cpu"])

    def train(run_dir):
        run_dir.mkdir(exist_ok=True)
        Trainer(cfg, build_experiment(cfg, "cpu", with_training_data=True), curriculum_stages(cfg), run_dir).run()
        return metrics(run_dir)

    uninterrupted = train(tmp_path / "whole")
    checks = iter(range(100))  # out of time at the 4th check: stage 1, step 3 of 4 (one check per stage and step)
    monkeypatch.setattr(Trainer, "out_of_time", lambda self: next(checks) == 3)
    stopped = train(tmp_path / "run")
    assert [line["step"] for line in stopped if line["kind"] == "train"] == [1, 2, 3]
    assert stopped[-1] == {"kind": "summary", "completed": False, "best_val_accuracy": {}}
    monkeypatch.setattr(Trainer, "out_of_time", lambda self: False)
    assert train(tmp_path / "run") == uninterrupted
