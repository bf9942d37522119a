import json
import signal
import subprocess
import time

import pytest
import torch
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


@pytest.fixture(scope="module")
def smoke_cfg():
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=["experiment=smoke", "trainer.device=cpu"])


def train_in_process(cfg, run_dir):
    """`rmt train experiment=smoke` on `run_dir`, in this process; its metrics."""
    from rmt_cli.experiment import build_experiment
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.train import Trainer

    run_dir.mkdir(exist_ok=True)
    Trainer(cfg, build_experiment(cfg, "cpu", with_training_data=True), curriculum_stages(cfg), run_dir).run()
    return metrics(run_dir)


@pytest.fixture(scope="module")
def uninterrupted_in_process(smoke_cfg, tmp_path_factory):
    return train_in_process(smoke_cfg, tmp_path_factory.mktemp("whole") / "run")


def stop_after_step(monkeypatch, last_step):
    """The time limit passes right after stage 1's step `last_step`."""
    from rmt_cli.stopping import Deadline

    checks = iter(range(100))  # one check before each stage, one after each step: check N follows stage 1's step N
    monkeypatch.setattr(Deadline, "passed", lambda self: next(checks) == last_step)


def test_a_time_limit_stops_mid_stage_and_the_same_command_continues_that_stage(
        smoke_cfg, uninterrupted_in_process, tmp_path, monkeypatch):
    from rmt_cli.checkpoint import load_trainer_state, resume_points
    from rmt_cli.stopping import Deadline

    stop_after_step(monkeypatch, 2)  # a validation step of experiment=smoke (eval_every=2)
    stopped = train_in_process(smoke_cfg, tmp_path / "run")
    assert [line["step"] for line in stopped if line["kind"] == "train"] == [1, 2]
    assert stopped == uninterrupted_in_process[:len(stopped) - 1] + [
        {"kind": "summary", "completed": False, "best_val_accuracy": {}}]
    state = load_trainer_state(resume_points(tmp_path / "run" / "checkpoints")[0])
    assert (state["stage"], state["step"], state["stage_done"], state["finished"]) == (1, 2, False, False)
    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    assert train_in_process(smoke_cfg, tmp_path / "run") == uninterrupted_in_process


def test_the_final_table_of_a_run_the_time_limit_stopped_says_so_and_shows_the_stage_it_stopped_in(
        smoke_cfg, tmp_path, monkeypatch, capsys):
    stop_after_step(monkeypatch, 2)
    train_in_process(smoke_cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert "Curriculum stopped by the time limit" in out and "Curriculum finished" not in out
    row = next(line for line in out.splitlines() if "2 of " in line)  # stage 1, 2 steps taken of its planned steps
    assert row.split("│")[1].strip() == "1" and "%" in row  # validated at step 2: its best accuracy is shown


def test_a_time_limit_between_validations_validates_the_steps_since_the_last_one_before_it_stops(
        smoke_cfg, uninterrupted_in_process, tmp_path, monkeypatch):
    from rmt_cli.checkpoint import load_trainer_state, read_meta, resume_points
    from rmt_cli.stopping import Deadline

    stop_after_step(monkeypatch, 3)  # not a validation step: 2 and 4 are
    stopped = train_in_process(smoke_cfg, tmp_path / "run")
    *trained, extra, summary = stopped
    assert trained == uninterrupted_in_process[:len(trained)] and trained[-1]["step"] == 3
    assert (extra["kind"], extra["stage"], extra["step"]) == ("val", 1, 3)
    assert summary == {"kind": "summary", "completed": False, "best_val_accuracy": {}}
    best = read_meta(tmp_path / "run" / "checkpoints" / "stage1-best")
    vals = [line["val_accuracy"] for line in stopped if line["kind"] == "val"]
    assert best["val_accuracy"] == max(vals) and (best["step"] == 3) == (vals[-1] >= vals[0])  # ties keep the later
    state = load_trainer_state(resume_points(tmp_path / "run" / "checkpoints")[0])
    assert (state["stage"], state["step"], state["stage_done"], state["finished"]) == (1, 3, False, False)
    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    resumed = train_in_process(smoke_cfg, tmp_path / "run")
    stage1 = [line for line in uninterrupted_in_process if line.get("stage") == 1 and line["kind"] == "train"]
    assert [line for line in resumed if line.get("stage") == 1 and line["kind"] == "train"] == stage1
    assert resumed[-1]["kind"] == "summary" and resumed[-1]["completed"]


def test_skip_spikes_skips_the_optimizer_step_of_a_gradient_norm_far_above_the_stage_median(
        smoke_cfg, tmp_path, monkeypatch, capsys):
    import torch
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"skip_spikes": 5.0},
                                      "curriculum": {"stages": [{"segments": 1, "steps": 14}]}})
    clip, calls, steps_taken = torch.nn.utils.clip_grad_norm_, [], []

    def spiking_clip(parameters, max_norm):  # the real clipping; the 12th step reports a norm 1,000 times larger
        calls.append(1)
        norm = clip(parameters, max_norm)
        return norm * 1000 if len(calls) == 12 else norm

    adamw_step = torch.optim.AdamW.step

    def counted_step(self, *args, **kwargs):
        steps_taken.append(1)
        return adamw_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spiking_clip)
    monkeypatch.setattr(torch.optim.AdamW, "step", counted_step)
    lines = [line for line in train_in_process(cfg, tmp_path / "run") if line["kind"] == "train"]
    assert len(calls) == 14 and len(steps_taken) == 13
    assert [line["skipped_steps"] for line in lines] == [0] * 11 + [1] * 3
    assert "stage 1 step 12: gradient norm" in capsys.readouterr().out


@pytest.mark.parametrize("recomputed", [{}, {"checkpoint_segments": True}, {"checkpoint_segments": True,
                                                                          "reentrant_checkpoints": True}],
                         ids=["kept", "checkpointed", "reentrant"])
def test_compute_dtype_bf16_trains_the_fp32_weights_through_a_bf16_copy_as_the_fp32_path_does(
        smoke_cfg, tmp_path, recomputed):
    import torch
    from omegaconf import OmegaConf

    from rmt_cli.experiment import build_experiment
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.train import Trainer

    runs = {}
    for dtype in ("fp32", "bf16"):
        cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"compute_dtype": dtype, "lr": 1e-4, **recomputed},
                                          "curriculum": {"stages": [{"segments": 2, "steps": 4}]}})
        experiment = build_experiment(cfg, "cpu", with_training_data=True)
        before = {name: p.detach().clone() for name, p in experiment.model.named_parameters()}
        (tmp_path / dtype).mkdir()
        trainer = Trainer(cfg, experiment, curriculum_stages(cfg), tmp_path / dtype)
        trainer.run()
        runs[dtype] = (experiment.model, before, metrics(tmp_path / dtype), trainer)
    (fp32, start, fp32_lines, _), (bf16, same_start, bf16_lines, trainer) = runs["fp32"], runs["bf16"]
    assert all(torch.equal(start[name], same_start[name]) for name in start)
    losses = [[line["loss"] for line in lines if line["kind"] == "train"] for lines in (fp32_lines, bf16_lines)]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=0.02, atol=0.02)
    assert {p.dtype for p in bf16.parameters()} == {torch.float32}
    assert bf16.state_dict().keys() == fp32.state_dict().keys()
    assert {p.dtype for p in trainer.working_copy.copy.parameters()} == {torch.bfloat16}
    # the copy recomputes its segments in the style the trainer asked for
    assert trainer.working_copy.copy.reentrant_checkpoints is recomputed.get("reentrant_checkpoints", False)
    trained = dict(fp32.named_parameters())
    for name, weight in bf16.named_parameters():  # the fp32 weights learnt from the copy's gradients
        assert torch.equal(weight, start[name]) == torch.equal(trained[name], start[name]), name


def test_a_stage_that_checkpoints_its_segments_trains_as_the_stage_that_keeps_its_activations(
        smoke_cfg, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from rmt_cli import engine

    asked = []
    original = engine.RecurrentMemory.forward

    def forward(self, *args, **kwargs):
        if kwargs.get("checkpoint_segments"):
            asked.append(True)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(engine.RecurrentMemory, "forward", forward)
    runs = {}
    for name, second_stage in (("kept", {}), ("recomputed", {"checkpoint_segments": True})):
        cfg = OmegaConf.merge(smoke_cfg, {"curriculum": {"stages": [{"segments": 2, "steps": 3},
                                                                    {"segments": 3, "steps": 3, **second_stage}]}})
        runs[name] = train_in_process(cfg, tmp_path / name)
    assert asked == [True] * 3  # the second stage's three training steps; validation never recomputes
    assert runs["recomputed"] == runs["kept"]  # recomputation replays dropout's random numbers


def test_compute_dtype_bf16_is_for_one_process():
    from omegaconf import OmegaConf

    from rmt_cli import distributed
    from rmt_cli.errors import UsageError
    from rmt_cli.train import check_trainer

    cfg = OmegaConf.create({"trainer": {"devices": 2, "device": "cpu", "batch_size": 4, "compute_dtype": "bf16"}})
    with pytest.raises(UsageError, match="trainer.compute_dtype=bf16 trains on one process"):
        check_trainer(cfg, distributed.Ranks())


def test_a_weight_average_follows_the_weights_and_stands_in_for_them_only_inside_applied():
    import torch

    from rmt_cli.weight_average import WeightAverage

    model = torch.nn.Linear(2, 1)
    model.bias.requires_grad_(False)  # not trained: not averaged
    start = model.weight.detach().clone()
    average = WeightAverage(model, decay=0.75)
    with torch.no_grad():
        model.weight.add_(4.0)
    average.update()
    trained = model.weight.detach().clone()
    assert torch.allclose(average.average[0], start + 1.0) and len(average.average) == 1
    with average.applied():
        assert torch.allclose(model.weight, start + 1.0)
    assert torch.equal(model.weight, trained)
    restored = WeightAverage(model, decay=0.75)
    restored.load_state_dict(average.state_dict())
    assert torch.equal(restored.average[0], average.average[0])


def test_ema_decay_validates_and_keeps_the_averaged_weights_and_resumes_exactly(
        smoke_cfg, tmp_path, monkeypatch):
    import torch
    from omegaconf import OmegaConf

    from rmt_cli.checkpoint import load_weights
    from rmt_cli.experiment import build_experiment
    from rmt_cli.stopping import Deadline

    one_stage = {"curriculum": {"stages": [{"segments": 1, "steps": 6}]}}
    plain = train_in_process(OmegaConf.merge(smoke_cfg, one_stage), tmp_path / "plain")
    same = train_in_process(OmegaConf.merge(smoke_cfg, one_stage, {"trainer": {"ema_decay": 0.0}}), tmp_path / "0")
    assert same == plain  # an average of the last step alone is the weights themselves

    frozen = OmegaConf.merge(smoke_cfg, one_stage, {"trainer": {"ema_decay": 1.0}})
    initial = build_experiment(frozen, "cpu", with_training_data=True).model.state_dict()
    lines = train_in_process(frozen, tmp_path / "frozen")
    assert [line["loss"] for line in lines if line["kind"] == "train"] == \
        [line["loss"] for line in plain if line["kind"] == "train"]  # training steps the weights themselves
    best = build_experiment(frozen, "cpu", with_training_data=True).model
    load_weights(tmp_path / "frozen" / "checkpoints" / "stage1-best", best)
    assert all(torch.equal(best.state_dict()[key], value) for key, value in initial.items())  # decay 1: never moves

    averaged = OmegaConf.merge(smoke_cfg, {"trainer": {"ema_decay": 0.5}})
    whole = train_in_process(averaged, tmp_path / "whole")
    assert whole != train_in_process(smoke_cfg, tmp_path / "unaveraged")
    stop_after_step(monkeypatch, 2)  # a validation step of experiment=smoke: a rerun's metrics are the whole run's
    train_in_process(averaged, tmp_path / "stopped")
    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    assert train_in_process(averaged, tmp_path / "stopped") == whole  # the average is in the resume point


def test_a_stage_may_average_its_weights_alone(smoke_cfg, tmp_path):
    import torch
    from omegaconf import OmegaConf

    from rmt_cli.checkpoint import load_weights
    from rmt_cli.experiment import build_experiment

    cfg = OmegaConf.merge(smoke_cfg, {"curriculum": {"stages": [{"segments": 1, "steps": 4},
                                                                {"segments": 2, "steps": 4, "ema_decay": 1.0}]}})
    train_in_process(cfg, tmp_path / "run")
    bests = []
    for stage in (1, 2):
        model = build_experiment(cfg, "cpu", with_training_data=True).model
        load_weights(tmp_path / "run" / "checkpoints" / f"stage{stage}-best", model)
        bests.append(model.state_dict())
    initial = build_experiment(cfg, "cpu", with_training_data=True).model.state_dict()
    assert not all(torch.equal(bests[0][key], value) for key, value in initial.items())  # stage 1: no average
    assert all(torch.equal(bests[1][key], value) for key, value in bests[0].items())  # stage 2 kept its start


@pytest.mark.parametrize("where", ["trainer", "stage"])
def test_revert_drop_sends_the_weights_back_to_the_stage_best_when_validation_falls_that_far_below_it(
        smoke_cfg, tmp_path, monkeypatch, capsys, where):
    import torch
    from omegaconf import OmegaConf

    from rmt_cli.checkpoint import load_weights
    from rmt_cli.experiment import build_experiment
    from rmt_cli.train import Trainer

    stage = {"segments": 1, "steps": 10, "ema_decay": 0.5}
    settings = ({"trainer": {"revert_drop": 0.1}, "curriculum": {"stages": [stage]}} if where == "trainer" else
                {"curriculum": {"stages": [{**stage, "revert_drop": 0.1}]}})
    cfg = OmegaConf.merge(smoke_cfg, settings)
    scripted = iter([0.5, 0.9, 0.85, 0.7, 0.95])  # validations at steps 2, 4, 6, 8, 10 (eval_every=2)
    monkeypatch.setattr(Trainer, "validate", lambda self, samples, data: next(scripted))
    reverts = []
    revert = Trainer.revert_to_best

    def observed(self, run, val, drop):  # the model and optimizer right after the revert, beside the best checkpoint
        revert(self, run, val, drop)
        best = build_experiment(cfg, "cpu", with_training_data=True).model
        load_weights(self.run_dir / "checkpoints" / "stage1-best", best)
        reverts.append((self.state.step, {k: v.clone() for k, v in self.model.state_dict().items()},
                        best.state_dict(), len(run.optimizer.state), [a.clone() for a in run.average.average]))

    monkeypatch.setattr(Trainer, "revert_to_best", observed)
    lines = train_in_process(cfg, tmp_path / "run")
    # 0.85 is within 0.1 of the best 0.9; 0.7 is not: back to step 4's weights, once
    assert [(line["step"], line["val_accuracy"], line["best_val_accuracy"]) for line in lines
            if line["kind"] == "revert"] == [(8, 0.7, 0.9)]
    [(step, weights, best, moments, average)] = reverts
    assert step == 8 and moments == 0  # AdamW's moments begin again
    assert all(torch.equal(weights[key], value) for key, value in best.items())
    trainable = [name for name, p in build_experiment(cfg, "cpu", with_training_data=True).model.named_parameters()
                 if p.requires_grad]
    assert all(torch.equal(a, weights[name]) for a, name in zip(average, trainable, strict=True))  # restarted
    assert "validation 70.00% is more than 10 points below the stage's best (90.00%)" in capsys.readouterr().out
    assert [line["step"] for line in lines if line["kind"] == "train"][-1] == 10  # the stage went on to its end
    assert lines[-1]["best_val_accuracy"] == {"1": 0.95}


def test_a_run_stopped_right_after_a_revert_resumes_to_the_whole_run(smoke_cfg, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from rmt_cli.stopping import Deadline
    from rmt_cli.train import Trainer

    cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"revert_drop": 0.1}, "curriculum": {
        "stages": [{"segments": 1, "steps": 10, "ema_decay": 0.5}]}})
    by_step = {2: 0.5, 4: 0.9, 6: 0.85, 8: 0.7, 10: 0.95}  # step 8 falls 20 points below step 4's best
    monkeypatch.setattr(Trainer, "validate", lambda self, samples, data: by_step[self.state.step])
    whole = train_in_process(cfg, tmp_path / "whole")
    assert [line["step"] for line in whole if line["kind"] == "revert"] == [8]
    stop_after_step(monkeypatch, 8)  # the resume point written after the revert
    train_in_process(cfg, tmp_path / "stopped")
    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    assert train_in_process(cfg, tmp_path / "stopped") == whole  # the reverted weights, average and moments resume


def test_without_revert_drop_a_fall_in_validation_keeps_training_the_weights_it_has(smoke_cfg, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from rmt_cli.train import Trainer

    cfg = OmegaConf.merge(smoke_cfg, {"curriculum": {"stages": [{"segments": 1, "steps": 6}]}})
    scripted = iter([0.9, 0.1, 0.2])
    monkeypatch.setattr(Trainer, "validate", lambda self, samples, data: next(scripted))
    assert not [line for line in train_in_process(cfg, tmp_path / "run") if line["kind"] == "revert"]


def test_a_stage_that_carries_memory_starts_its_samples_from_the_memory_the_step_before_ended_with(
        smoke_cfg, tmp_path, monkeypatch):
    import torch
    from omegaconf import OmegaConf

    from rmt_cli.engine import RecurrentMemory

    calls = []  # per training forward: the carried rows and memory it was given, the memory it ended with
    forward = RecurrentMemory.forward

    def recorded(self, steps, *args, **kwargs):
        out = forward(self, steps, *args, **kwargs)
        if self.training:  # not validation
            calls.append((kwargs.get("carried"), out.memory.detach().clone()))
        return out

    monkeypatch.setattr(RecurrentMemory, "forward", recorded)
    cfg = OmegaConf.merge(smoke_cfg, {"curriculum": {"stages": [{"segments": 2, "steps": 3, "carry_memory": 0.5},
                                                                {"segments": 2, "steps": 2}]}})
    train_in_process(cfg, tmp_path / "run")
    assert len(calls) == 5
    assert calls[0][0] is None  # a stage's first step has nothing to carry
    for step in (1, 2):
        rows, memory = calls[step][0]
        assert torch.equal(memory, calls[step - 1][1])  # the memory each row ended the step before with
        assert torch.equal(rows, calls[1][0][0])  # the same rows carry all stage
    assert int(rows.sum()) == cfg.trainer.batch_size // 2
    assert calls[3][0] is None and calls[4][0] is None  # stage 2 does not carry


FIT_STAGES = {"curriculum": {"stages": [{"segments": 1, "steps": 4}, {"segments": 2, "steps": 12}]},
              "trainer": {"time_limit_minutes": 30, "fit_time_limit": True}}


def paced(monkeypatch, seconds_at_start=7.0, seconds_per_step=1.0):
    """A clock for trainer.fit_time_limit: the last stage (stage 2) starts with `seconds_at_start` left, and each of
    its steps takes `seconds_per_step`, as its measured pace says (the step is read from its metrics lines)."""
    from rmt_cli.loggers import Metrics
    from rmt_cli.stopping import Deadline
    from rmt_cli.train import StageRun

    taken = {"steps": 0}
    write = Metrics.write

    def counting(self, **fields):
        if fields["kind"] == "train" and fields["stage"] == 2:
            taken["steps"] = fields["step"]
        write(self, **fields)

    monkeypatch.setattr(Metrics, "write", counting)
    monkeypatch.setattr(Deadline, "seconds_left", lambda self: seconds_at_start - taken["steps"] * seconds_per_step)
    monkeypatch.setattr(StageRun, "seconds_per_step", lambda self, step: seconds_per_step)


def stage_lines(lines, stage, kind="train"):
    return [line for line in lines if line.get("stage") == stage and line["kind"] == kind]


@pytest.fixture
def fitted_cfg(smoke_cfg):
    from omegaconf import OmegaConf

    return OmegaConf.merge(smoke_cfg, FIT_STAGES)


def test_fit_time_limit_cuts_the_last_stage_to_the_time_left_and_its_schedule_decays_to_the_new_end(
        fitted_cfg, tmp_path, monkeypatch, capsys):
    from rmt_cli.lr_schedule import stage_schedule
    from rmt_cli.stopping import Deadline

    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    paced(monkeypatch)  # at stage 2's first validation (step 2): 5 s left, less the validation's time: 4 more steps
    # (and at step 4, 3 s left: 2 more, as cut)
    lines = train_in_process(fitted_cfg, tmp_path / "run")
    assert [line["step"] for line in stage_lines(lines, 1)] == [1, 2, 3, 4]  # not the last stage: never cut
    assert [line["step"] for line in stage_lines(lines, 2)] == [1, 2, 3, 4, 5, 6]
    assert stage_lines(lines, 2, "fit") == [{"kind": "fit", "stage": 2, "step": 2, "steps": 6, "planned": 12}]
    assert lines[-1] == {"kind": "summary", "completed": True, "best_val_accuracy": lines[-1]["best_val_accuracy"]}
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=fitted_cfg.trainer.lr)
    fresh = stage_schedule("linear", optimizer, 1, 6)  # warm-up int(0.1 * 12) = 1 step, as planned
    expected = []
    for _ in range(6):
        optimizer.step()
        fresh.step()
        expected.append(fresh.get_last_lr()[0])
    assert [line["lr"] for line in stage_lines(lines, 2)][2:] == pytest.approx(expected[2:])  # from step 3 on
    assert stage_lines(lines, 2)[-1]["lr"] == 0.0
    assert "its schedule now ends at step 6 (of 12 planned)" in capsys.readouterr().out


def test_a_stage_cut_at_its_first_validation_is_lengthened_again_when_its_pace_turns_out_faster(
        fitted_cfg, tmp_path, monkeypatch):
    from rmt_cli.stopping import Deadline
    from rmt_cli.train import StageRun

    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    monkeypatch.setattr(Deadline, "seconds_left", lambda self: 9.0)
    # the first measurement (step 2) counts the stage's start: 2 s a step; from then on 1 s
    monkeypatch.setattr(StageRun, "seconds_per_step", lambda self, step: 2.0 if step <= 2 else 1.0)
    lines = train_in_process(fitted_cfg, tmp_path / "run")
    assert stage_lines(lines, 2, "fit") == [{"kind": "fit", "stage": 2, "step": 2, "steps": 6, "planned": 12},
                                            {"kind": "fit", "stage": 2, "step": 4, "steps": 12, "planned": 12}]
    assert [line["step"] for line in stage_lines(lines, 2)] == list(range(1, 13))  # never past the planned steps
    assert stage_lines(lines, 2)[-1]["lr"] == 0.0
    assert lines[-1]["completed"]


def test_a_stage_cut_to_the_time_limit_resumes_with_its_cut_schedule(fitted_cfg, tmp_path, monkeypatch):
    from rmt_cli.checkpoint import load_trainer_state, resume_points
    from rmt_cli.stopping import Deadline

    paced(monkeypatch)
    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    whole = train_in_process(fitted_cfg, tmp_path / "whole")
    stop_after_step(monkeypatch, 8)  # checks 0-4 before stage 1 and after its steps, 5 before stage 2: its step 3
    stopped = train_in_process(fitted_cfg, tmp_path / "run")
    assert stopped[-1]["completed"] is False
    state = load_trainer_state(resume_points(tmp_path / "run" / "checkpoints")[0])
    assert (state["stage"], state["step"], state["stage_steps"]) == (2, 3, 6)
    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    resumed = train_in_process(fitted_cfg, tmp_path / "run")
    assert stage_lines(resumed, 2) == stage_lines(whole, 2)
    assert resumed[-1]["completed"]


def test_fit_time_limit_without_a_time_limit_says_it_does_nothing(smoke_cfg, tmp_path, capsys):
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(smoke_cfg, {"trainer": {"fit_time_limit": True}})
    lines = train_in_process(cfg, tmp_path / "run")
    assert "trainer.fit_time_limit=true does nothing without trainer.time_limit_minutes" in capsys.readouterr().out
    assert [line["step"] for line in stage_lines(lines, 2)] == [1, 2, 3, 4]  # every planned step
