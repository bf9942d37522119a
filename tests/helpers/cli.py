"""Run the `rmt` command line from a test: in this process (`rmt`, fast: torch and the configs are imported once),
or as a child process (`rmt_process`, for what needs one of its own: workers, signals, a process to kill).

Both return what `subprocess.run(..., capture_output=True, text=True)` returns: `.returncode`, `.stdout`,
`.stderr`. Both run with ENV on top of the test process's environment and without HYDRA_FULL_ERROR, so that an
error is the one line a user sees.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import traceback
from pathlib import Path

ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def environment(env: dict | None = None) -> dict:
    """The environment a command runs with: this process's, ENV and `env` on top, HYDRA_FULL_ERROR removed."""
    merged = {**os.environ, **ENV, **(env or {})}
    merged.pop("HYDRA_FULL_ERROR", None)
    return merged


def rmt(*args, cwd: str | Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`rmt ARGS` run in this process, as `python -m rmt_cli ARGS` would run it in a fresh one.

    What a command changes for the whole process is put back afterwards: the environment (`--debug` sets
    HYDRA_FULL_ERROR), the working directory, sys.argv (Hydra reads the command line from it), Hydra's global
    state, the root logger's handlers (Hydra points them at the run's log file and at the captured streams) and
    the random number generators (training seeds torch). An exception that escapes the command is written to
    stderr with exit code 1, as Python does, so that assertions about tracebacks mean the same as for a process.
    """
    import numpy as np
    import torch
    from hydra.core.global_hydra import GlobalHydra
    from typer.testing import CliRunner

    from rmt_cli.cli import app

    saved_environ, saved_argv, saved_cwd = dict(os.environ), sys.argv[:], os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    wanted = environment(env)  # computed before the clear: it starts from this process's environment
    os.environ.clear()
    os.environ.update(wanted)
    GlobalHydra.instance().clear()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, [str(arg) for arg in args], prog_name="rmt")
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        sys.argv = saved_argv
        GlobalHydra.instance().clear()
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        random.setstate(saved_rng[0])
        np.random.set_state(saved_rng[1])
        torch.set_rng_state(saved_rng[2])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["rmt", *map(str, args)], result.exit_code, result.stdout, stderr)


def rmt_command(*args) -> list[str]:
    """The command line of `rmt ARGS` as a child process."""
    return [sys.executable, "-m", "rmt_cli", *map(str, args)]


def rmt_process(*args, cwd: str | Path | None = None, env: dict | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """`rmt ARGS` as a child process of its own, waited for."""
    return subprocess.run(rmt_command(*args), check=False, capture_output=True, text=True, env=environment(env),
                          cwd=cwd, timeout=timeout)


def rmt_popen(*args, env: dict | None = None, **popen_options) -> subprocess.Popen:
    """`rmt ARGS` started as a child process, to be signalled or killed; `popen_options` go to subprocess.Popen."""
    return subprocess.Popen(rmt_command(*args), env=environment(env), **popen_options)
