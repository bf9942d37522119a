import os
import shutil

import pytest
from typer.testing import CliRunner

from rmt_cli import __version__, run_info
from rmt_cli.cli import app, checkpoint_overrides
from rmt_cli.errors import UsageError
from rmt_cli.runs import newest_finished_run


def copy_run(source, target, finished, age):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("tensorboard"))
    info = run_info.read(target)
    run_info.write(target, {**info, "finished": finished})
    os.utime(target / run_info.FILE, (age, age))
    return target


def test_the_newest_finished_run_is_picked(smoke_run_dir, tmp_path):
    outputs = tmp_path / "outputs"
    older = copy_run(smoke_run_dir, outputs / "train" / "older", finished=True, age=1_000_000)
    assert newest_finished_run(outputs) == older
    copy_run(smoke_run_dir, outputs / "train" / "unfinished", finished=False, age=3_000_000)
    newer = copy_run(smoke_run_dir, outputs / "multirun" / "train" / "x" / "0_memorize", finished=True, age=2_000_000)
    assert newest_finished_run(outputs) == newer


def test_a_run_from_before_run_info_tells_through_its_resume_checkpoint(smoke_run_dir, tmp_path):
    run = shutil.copytree(smoke_run_dir, tmp_path / "outputs" / "train" / "legacy")
    (run / run_info.FILE).unlink()
    assert newest_finished_run(tmp_path / "outputs") == run
    for point in (run / "checkpoints").glob("last-*"):
        shutil.rmtree(point)
    with pytest.raises(UsageError, match="no finished training run under .*; pass --checkpoint RUN_DIR"):
        newest_finished_run(tmp_path / "outputs")


def test_commands_without_checkpoint_use_the_newest_run_and_say_which(smoke_run_dir, tmp_path, monkeypatch, capsys):
    copy_run(smoke_run_dir, tmp_path / "outputs" / "train" / "only", finished=True, age=1_000_000)
    monkeypatch.chdir(tmp_path)
    assert checkpoint_overrides(None, samples=4)[0] == "checkpoint='" + str(tmp_path / "outputs/train/only") + "'"
    assert "using the newest finished run outputs/train/only" in capsys.readouterr().err


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"rmt {__version__}"
