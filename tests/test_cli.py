import json

import pytest
import torch
from helpers.cli import rmt

from rmt_cli import config_dir


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = rmt("train", "experiment=smoke", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_smoke_training_writes_config_metrics_and_checkpoints(smoke_run):
    run_dir, result = smoke_run
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [line for line in lines if line["kind"] == "train"]
    val = [line for line in lines if line["kind"] == "val"]
    assert {"step", "stage", "segments", "loss", "lr", "tokens_per_s"} <= set(train[0])
    assert {line["stage"] for line in val} == {1, 2} and all(0 <= line["val_accuracy"] <= 1 for line in val)
    assert {(line["stage"], line["segments"]) for line in val} == {(1, 1), (2, 3)}  # stage 2 sets val_segments: 3
    for stage in (1, 2):
        assert (run_dir / "checkpoints" / f"stage{stage}-best" / "model.safetensors").is_file()
    assert "backbone" in (run_dir / "config.yaml").read_text()
    assert "Curriculum finished" in result.stdout
    noise = next(line for line in result.stdout.splitlines() if line.startswith("noise: training "))
    assert "; validation and test " in noise and noise.endswith(" tokens")


def test_a_stage_leaves_early_at_its_own_advance_at(tmp_path):
    stages = "curriculum.stages=[{segments:1,steps:8,advance_at:0},{segments:2,steps:2}]"
    result = rmt("train", "experiment=smoke", stages, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [(line["stage"], line["step"]) for line in lines if line["kind"] == "val"]
    assert val == [(1, 2), (2, 2)]  # stage 1 ended at its first validation; stage 2 ran its 2 steps


def test_training_names_a_primed_stage_that_advance_at_can_end_early(tmp_path):
    stages = "curriculum.stages=[{segments:1,steps:1},{segments:2,steps:1,noise_primed:0.5,advance_at:0.98}]"
    result = rmt("train", "experiment=smoke", "task=detect", stages, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    cautions = [line for line in result.stdout.splitlines() if "with noise_primed" in line]
    assert len(cautions) == 1 and cautions[0].startswith("stage 2: advance_at 0.98 with noise_primed 0.5: ")


def test_a_stage_validates_at_its_own_interval_on_its_own_number_of_samples(tmp_path):
    stages = "curriculum.stages=[{segments:1,steps:4,eval_every:4,val_samples:3},{segments:2,steps:2}]"
    result = rmt("train", "experiment=smoke", stages, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(line["stage"], line["step"]) for line in lines if line["kind"] == "val"] == [(1, 4), (2, 2)]
    assert "stage 1 step 4: validation accuracy" in result.stdout and "on 3 samples of 1 segments" in result.stdout
    assert "on 8 samples of 2 segments" in result.stdout  # stage 2: the trainer's val_samples and eval_every


def test_training_with_a_bf16_prefix_before_the_bptt_window_runs_and_saves_its_weights(tmp_path):
    stages = "curriculum.stages=[{segments:3,steps:4,bptt_segments:1}]"
    result = rmt("train", "experiment=smoke", stages, "trainer.prefix_dtype=bf16", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    train = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert len(train) == 4 and all(line["loss"] > 0 for line in train)
    assert (tmp_path / "checkpoints" / "stage1-best" / "model.safetensors").is_file()


def test_eval_reads_the_trained_run(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    result = rmt("eval", "--checkpoint", str(run_dir), "--samples", "16", "task.segments=3",
                 f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["segments"] == 3 and report["samples"] == 16 and 0 <= report["accuracy"] <= 1
    assert report["checkpoint"].endswith("stage2-best")


def test_cfg_job_prints_the_composed_config_without_running(tmp_path):
    result = rmt("train", "--cfg", "job", "task=detect", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "name: detect" in result.stdout and "fact_position: random" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_multirun_sweeps_with_the_basic_launcher(tmp_path):
    result = rmt("train", "-m", "experiment=smoke", "task=memorize,detect", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert runs == ["0_memorize", "1_detect"]
    assert all((tmp_path / run / "checkpoints" / "stage2-best").is_dir() for run in runs)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml")))
def test_every_preset_composes(experiment):
    from hydra import compose, initialize_config_dir

    from rmt_cli.config_check import check

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    assert cfg.curriculum.stages and cfg.segment.length <= 512 and cfg.memory.size > 0
    check(cfg, "train")


@pytest.mark.parametrize("group", ["task", "backbone", "noise", "curriculum"])
def test_every_group_option_composes(group):
    from hydra import compose, initialize_config_dir

    from rmt_cli.config_check import check

    for option in sorted(p.stem for p in (config_dir() / group).glob("*.yaml")):
        overrides = [f"{group}={option}"] + (["backbone.name_or_path=bert-base-cased"] if option == "hf" else [])
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        assert cfg[group] is not None
        check(cfg, "train")


def test_a_diverging_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    result = rmt("train", "experiment=smoke", "trainer.lr=1e30", "curriculum.stages=[{segments:1,steps:20}]",
                 f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "loss became nan at stage 1 step" in result.stderr and "lower trainer.lr" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_documents_the_commands():
    from typer.testing import CliRunner

    from rmt_cli.cli import app

    def help_of(*command):
        result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    assert "--debug Show full tracebacks" in help_of()  # a flag, shown without a value
    train = help_of("train")
    assert "train [OPTIONS] [HYDRA FLAGS] [OVERRIDES]..." in train and "OVERRIDES set any config key" in train
    assert "experiment=smoke" in train and "resume=force" in train
    evaluate = help_of("eval")
    assert "--checkpoint" in evaluate and "--batch-size" in evaluate and "[OVERRIDES]" in evaluate
    extrapolate = help_of("extrapolate")
    assert "--max-segments" in extrapolate and "512 positions" not in extrapolate


@pytest.mark.slow  # each point runs in a submitit process of its own, importing torch
def test_multirun_through_the_submitit_local_launcher(tmp_path):
    result = rmt("train", "-m", "experiment=smoke", "task=memorize,detect", "cluster=local",
                 f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    for run in ("0_memorize", "1_detect"):
        assert (tmp_path / run / "metrics.jsonl").is_file()
        assert (tmp_path / run / "checkpoints" / "stage2-best" / "model.safetensors").is_file()


def test_slurm_preset_configures_the_submitit_slurm_launcher():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["cluster=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.tasks_per_node == launcher.gpus_per_node == 1 and launcher.max_num_timeout > 0


def test_a_new_run_starts_from_the_weights_of_trainer_init_from(smoke_run_dir, tmp_path):
    from safetensors.torch import load_file

    # one step at a learning rate too small to move a weight: the run's checkpoint is the source's weights
    result = rmt("train", "experiment=smoke", "curriculum.stages=[{segments:1,steps:1}]", "trainer.lr=1e-12",
                 f"trainer.init_from={smoke_run_dir}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    assert f"starting from the weights of {smoke_run_dir / 'checkpoints' / 'stage2-best'}" in result.stdout
    source = load_file(smoke_run_dir / "checkpoints" / "stage2-best" / "model.safetensors")
    started = load_file(tmp_path / "run" / "checkpoints" / "stage1-best" / "model.safetensors")
    assert source.keys() == started.keys()
    assert all(torch.allclose(started[name], source[name], atol=1e-6) for name in source)
    fresh = rmt("train", "experiment=smoke", "curriculum.stages=[{segments:1,steps:1}]", "trainer.lr=1e-12",
                f"hydra.run.dir={tmp_path / 'fresh'}")
    assert fresh.returncode == 0, fresh.stderr
    unstarted = load_file(tmp_path / "fresh" / "checkpoints" / "stage1-best" / "model.safetensors")
    assert not torch.allclose(unstarted["initial_memory"], source["initial_memory"], atol=1e-6)


def test_an_associative_memory_run_may_start_from_a_run_without_one(smoke_run_dir, tmp_path):
    from safetensors.torch import load_file

    result = rmt("train", "experiment=smoke", "curriculum.stages=[{segments:1,steps:1}]", "trainer.lr=1e-12",
                 "memory.associative=true", f"trainer.init_from={smoke_run_dir}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    source = load_file(smoke_run_dir / "checkpoints" / "stage2-best" / "model.safetensors")
    started = load_file(tmp_path / "run" / "checkpoints" / "stage1-best" / "model.safetensors")
    assert all(torch.allclose(started[name], source[name], atol=1e-6) for name in source)
    assert {name for name in started if name not in source} and all(
        name.startswith("associative.") for name in started if name not in source)
    back = rmt("train", "experiment=smoke", "curriculum.stages=[{segments:1,steps:1}]",
               f"trainer.init_from={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'back'}")
    assert back.returncode != 0 and "associative." in back.stderr and len(back.stderr.strip().splitlines()) == 1


def test_an_init_from_that_cannot_start_the_run_is_one_line(smoke_run_dir, tmp_path):
    hint = "; start from a run folder of `rmt train` with this backbone and memory size"
    nowhere = tmp_path / "nowhere"
    result = rmt("train", "experiment=smoke", f"trainer.init_from={nowhere}", f"hydra.run.dir={tmp_path / 'a'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: trainer.init_from={nowhere}: checkpoint path {nowhere} does not "
                                     f"exist{hint}")
    result = rmt("train", "experiment=smoke", "memory.size=3", f"trainer.init_from={smoke_run_dir}",
                 f"hydra.run.dir={tmp_path / 'b'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: trainer.init_from={smoke_run_dir}: checkpoint "
                                     f"{smoke_run_dir / 'checkpoints' / 'stage2-best'} does not fit this model: "
                                     f"initial_memory is [10, 32] there and [3, 32] here{hint}")


@pytest.mark.parametrize("setting, rows", [("memory.every_layer=true", 2 * 10), ("memory.associative=true", 10)])
def test_training_with_another_kind_of_memory_runs_and_its_checkpoint_extrapolates(tmp_path, setting, rows):
    stages = "curriculum.stages=[{segments:2,steps:3}]"
    result = rmt("train", "experiment=smoke", stages, setting, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    best = tmp_path / "checkpoints" / "stage1-best"
    from safetensors.torch import load_file

    weights = load_file(str(best / "model.safetensors"))
    assert weights["initial_memory"].shape[0] == rows  # the smoke backbone's two blocks, memory.size vectors each
    assert any(name.startswith("associative.") for name in weights) == ("associative" in setting)
    evaluated = rmt("extrapolate", "--checkpoint", str(tmp_path), "--segments", "2,4", "--samples", "4",
                    f"hydra.run.dir={tmp_path / 'extrapolate'}")
    assert evaluated.returncode == 0, evaluated.stderr
