"""Nothing is lost: one run per folder, a lock while it runs, reruns that continue the same run only, no leftovers."""

import fcntl
import os
import subprocess
import time

import pytest
from helpers.cli import rmt, rmt_popen

from rmt_cli.checkpoint import FILE_MODE, save_checkpoint, tidy
from rmt_cli.errors import RuntimeFailure
from rmt_cli.run_folder import new_run_dir
from test_resume import metrics

TWO_STAGES = "curriculum.stages=[{segments:1,steps:4},{segments:2,steps:4}]"
THREE_STAGES = "curriculum.stages=[{segments:1,steps:4},{segments:2,steps:4},{segments:3,steps:2}]"


@pytest.fixture(scope="module")
def three_stage_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    result = rmt("train", "experiment=smoke", THREE_STAGES, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path):
    proposed = tmp_path / "2026-01-01_00-00-00_memorize"
    assert [new_run_dir(proposed) for _ in range(3)] == [proposed, proposed.with_name(proposed.name + "-2"),
                                                         proposed.with_name(proposed.name + "-3")]


def test_commands_started_together_without_a_run_folder_each_get_one(tmp_path, monkeypatch):
    from rmt_cli.hydra_runner import check_composes, own_folder

    monkeypatch.chdir(tmp_path)
    composed = check_composes("train", ["experiment=smoke"])
    (args_a, first), (args_b, second) = (own_folder("train", [], composed, False) for _ in range(2))
    assert first != second and first.is_dir() and second.is_dir()
    assert args_a == [f"hydra.run.dir={first}"] and args_b == [f"hydra.run.dir={second}"]


def test_a_run_folder_in_use_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("process 4242 on node7")
        held.flush()
        result = rmt("train", "experiment=smoke", f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: run folder {run_dir} is in use by process 4242 on node7; wait for "
                                     "that run to end, or choose another folder with hydra.run.dir=DIR")
    assert sorted(os.listdir(run_dir)) == [".lock"]


def test_the_lock_of_a_run_that_died_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("process 4242 on node7")  # no process holds it any more
    result = rmt("train", "experiment=smoke", "curriculum.stages=[{segments:1,steps:1}]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert f"took over the lock of process 4242 on node7 on {run_dir}, which has ended" in result.stdout
    assert not (run_dir / ".lock").exists()


@pytest.mark.slow  # a process of its own to kill, importing torch
def test_a_run_killed_before_its_first_resume_point_reruns_to_the_same_metrics(tmp_path):
    stages = "curriculum.stages=[{segments:1,steps:12}]"
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert rmt("train", "experiment=smoke", stages, "trainer.eval_every=100", f"hydra.run.dir={whole}").returncode == 0
    process = rmt_popen("train", "experiment=smoke", stages, "trainer.eval_every=100", f"hydra.run.dir={killed}",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (killed / "metrics.jsonl").is_file() and len((killed / "metrics.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    process.kill()
    process.wait()
    assert not list(killed.glob("checkpoints/last-*")), "the run saved a resume point before it could be killed"
    assert len(metrics(killed)) >= 3
    result = rmt("train", "experiment=smoke", stages, "trainer.eval_every=100", f"hydra.run.dir={killed}")
    assert result.returncode == 0, result.stderr
    assert metrics(killed) == metrics(whole)


def test_a_rerun_with_another_config_is_refused_and_names_what_differs(three_stage_run):
    before = (three_stage_run / "metrics.jsonl").read_text(), (three_stage_run / "config.yaml").read_text()
    result = rmt("train", "experiment=smoke", THREE_STAGES, "trainer.lr=0.5", "seed=7",
                 f"hydra.run.dir={three_stage_run}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: run folder {three_stage_run} holds a run with another config (seed: 0 → 7; trainer.lr: 0.001 → 0.5)"
        ": start fresh in another folder (hydra.run.dir=DIR), or add resume=force to continue it with the new values")
    result = rmt("train", "experiment=smoke", THREE_STAGES, "task=qa2", f"hydra.run.dir={three_stage_run}")
    assert result.returncode == 2 and "task.generator: qa1 → qa2" in result.stderr
    assert ((three_stage_run / "metrics.jsonl").read_text(), (three_stage_run / "config.yaml").read_text()) == before


def test_resume_force_continues_a_changed_run(tmp_path):
    run_dir = tmp_path / "run"
    assert rmt("train", "experiment=smoke", TWO_STAGES, f"hydra.run.dir={run_dir}").returncode == 0
    changed = ("train", "experiment=smoke", THREE_STAGES, "trainer.weight_decay=0.5", f"hydra.run.dir={run_dir}")
    assert rmt(*changed).returncode == 2
    result = rmt(*changed, "resume=force")
    assert result.returncode == 0, result.stderr
    assert f"continuing {run_dir} into stage 3" in result.stdout
    assert "weight_decay: 0.5" in (run_dir / "config.yaml").read_text()


def test_stages_added_on_a_rerun_continue_the_run(three_stage_run, tmp_path):
    run_dir = tmp_path / "run"
    assert rmt("train", "experiment=smoke", TWO_STAGES, f"hydra.run.dir={run_dir}").returncode == 0
    result = rmt("train", "experiment=smoke", THREE_STAGES, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert f"continuing {run_dir} into stage 3" in result.stdout
    assert metrics(run_dir) == metrics(three_stage_run)


def test_a_failed_command_leaves_no_empty_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = rmt("train", "experiment=smoke", "noise=files", f"noise.paths=[{tmp_path}/nothing]")
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert not list((tmp_path / "outputs" / "train").iterdir())
    given = tmp_path / "given"
    result = rmt("train", "experiment=smoke", "noise=files", f"noise.paths=[{tmp_path}/nothing]",
                 f"hydra.run.dir={given}")
    assert result.returncode == 1 and not given.exists()


def test_a_full_disk_during_a_save_is_one_line_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import torch

    from rmt_cli import checkpoint

    def full_disk(model, path):
        open(path, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_model", full_disk)
    from rmt_cli.user_messages import user_message

    with pytest.raises(checkpoint.CheckpointNotWritten,
                       match="cannot write checkpoint .*stage1-best \\(No space left on device\\)$") as error:
        save_checkpoint(tmp_path / "stage1-best", torch.nn.Linear(2, 2), {})
    assert isinstance(error.value, RuntimeFailure) and error.value.reason == "No space left on device"
    assert user_message(error.value).endswith("); free disk space, then run the same command again to resume from "
                                              "the last checkpoint")
    assert os.listdir(tmp_path) == []


def test_checkpoint_files_share_one_mode(tmp_path):
    import torch

    save_checkpoint(tmp_path / "stage1-best", torch.nn.Linear(2, 2), {"config": {}}, {"step": 1})
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "stage1-best").iterdir()}
    assert set(modes) == {"model.safetensors", "meta.json", "trainer.pt", "manifest.json"}
    assert set(modes.values()) == {FILE_MODE}


def test_leftovers_of_an_interrupted_save_are_tidied(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for name in ("stage1-best.tmp", "stage2-best.old", "stage3-best", "stage3-best.old"):
        (checkpoints / name).mkdir(parents=True)
        (checkpoints / name / "meta.json").write_text(name)
    tidy(checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["stage2-best", "stage3-best"]
    assert (checkpoints / "stage2-best" / "meta.json").read_text() == "stage2-best.old"  # the only copy, restored
    assert (checkpoints / "stage3-best" / "meta.json").read_text() == "stage3-best"


def test_one_bad_sweep_point_does_not_stop_the_good_ones(tmp_path):
    result = rmt("train", "-m", "experiment=smoke", "curriculum.stages=[{segments:1,steps:1}]", "memory.size=0,10",
                 f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("error: sweep point experiment=smoke curriculum.stages="
                                                      "[{segments:1,steps:1}] memory.size=0: "
                                                      "memory.size=0 must be at least 1")
    assert (tmp_path / "1_memorize" / "checkpoints" / "stage1-best").is_dir()
    assert not (tmp_path / "0_memorize").exists()


def test_checkpointing_segments_in_the_trainer_or_a_stage_is_no_change_of_the_run():
    from rmt_cli.run_changes import config_changes

    saved = {"trainer": {"checkpoint_segments": False, "lr": 1e-3},
             "curriculum": {"stages": [{"segments": 1, "steps": 5}, {"segments": 8, "steps": 5}]}}
    rerun = {"trainer": {"checkpoint_segments": True, "lr": 1e-3},
             "curriculum": {"stages": [{"segments": 1, "steps": 5},
                                       {"segments": 8, "steps": 5, "checkpoint_segments": True}]}}
    assert config_changes(saved, rerun) == []
    rerun["curriculum"]["stages"][1]["bptt_segments"] = 4
    assert config_changes(saved, rerun) == ["curriculum.stages[1].bptt_segments: None → 4"]
