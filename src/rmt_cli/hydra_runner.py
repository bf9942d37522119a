"""How a command of `rmt` runs through Hydra: its overrides checked to compose before anything is written, its run
folder chosen and locked, its composed config checked once, and every user-caused error turned into one line and
an exit code (each point of a sweep records its own). cli.py holds the commands; this module, the machinery they
share.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Callable

import typer

from rmt_cli import config_dir, worker_errors
from rmt_cli.errors import RmtError, UsageError
from rmt_cli.user_messages import user_message

HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path", "-cp",
                          "--config-dir", "-cd", "--info", "--experimental-rerun"}


def debug_enabled() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def report_errors(function: Callable[[], object]) -> None:
    """Run `function`; a user-caused error becomes one line on stderr and its exit code, no traceback."""
    try:
        function()
    except RmtError as error:
        if debug_enabled():
            raise
        message = user_message(error)
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        worker_errors.record(message, error.exit_code)  # a data-parallel worker also tells its launcher
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        worker_errors.record(None, 130)
        raise SystemExit(130) from None


def split_overrides(args: list[str]) -> tuple[list[str], bool]:
    """The plain `key=value` overrides among Hydra's arguments, and whether this is a multirun."""
    overrides, skip_next, multirun = [], False, False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip_next = True
        elif not arg.startswith("-") and not arg.startswith("hydra.") and not arg.startswith("hydra/"):
            overrides.append(arg)
    return overrides, multirun


PRINT_ONLY_FLAGS = {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc"}
PRINTING_FLAGS = {"--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}  # Hydra refuses them beside -m


def check_composes(config_name: str, overrides: list[str]):
    """Compose the config once before Hydra runs, so that a bad override is one clear line (exit 2).
    Returns the composed config, Hydra's node included."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rmt_cli.config_errors import config_error, under_null_node

    def composed(overrides: list[str]):
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)

    try:
        return composed(overrides)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as error:
        raise config_error(error, config_name) from None
    except AssertionError as error:  # OmegaConf refuses a key under a null node with an assertion naming neither
        for count in range(1, len(overrides) + 1):
            try:
                composed(overrides[:count])
            except AssertionError:
                raise under_null_node(overrides[count - 1]) from None
        raise UsageError(f"the config does not compose ({error})") from None


def check_sweep_composes(config_name: str, overrides: list[str]) -> None:
    """Every value a sweep takes composes: a bad one is one line before any point runs (Hydra would stop the sweep
    at that point with its own account of the error)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from rmt_cli.config_errors import hydra_line

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise UsageError(hydra_line(str(error))) from None
    fixed = [line for line, override in zip(overrides, parsed, strict=True) if not override.is_sweep_override()]
    check_composes(config_name, fixed)
    for override in (override for override in parsed if override.is_sweep_override()):
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:  # not a list of values here (a glob of options, an interval): Hydra checks it
            continue
        for value in values:
            check_composes(config_name, [*fixed, f"{override.get_key_element()}={value}"])


def given_folder(args: list[str], key: str) -> str | None:
    """The value of the last `key=VALUE` among Hydra's arguments (the last one wins), or None."""
    return next((a[len(key) + 1:] for a in reversed(args) if a.startswith(key + "=")), None)


def own_folder(config_name: str, args: list[str], composed, multirun: bool) -> tuple[list[str], Path | None]:
    """Give a run (or sweep) that names no folder a new one of its own, created now: two runs started in the same
    second would otherwise share Hydra's default, stamped to the second. Returns the arguments and the folder."""
    from omegaconf import OmegaConf

    from rmt_cli.run_folder import new_run_dir

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = given_folder(args, key)
    if given == "":
        raise UsageError(f"{key} is empty; give the folder for this run, e.g. {key}=outputs/my-run")
    if given is not None:
        return args, Path(given)
    if composed is None:
        composed = check_composes(config_name, [])  # a sweep's folder does not depend on the swept values
    default = Path(str(OmegaConf.select(composed, key)))
    if default == Path("."):  # a command that writes no run folder (preview)
        return args, None
    if config_name == "train":
        from rmt_cli import distributed

        ranks = distributed.environment()
        if ranks.world > 1:  # every torchrun rank runs this command: all use rank 0's folder
            distributed.join(ranks)
            folder = Path(distributed.share_string(str(new_run_dir(default)) if ranks.writer else ""))
            return [*args, f"{key}={folder}"], folder
    folder = new_run_dir(default)
    return [*args, f"{key}={folder}"], folder


def data_parallel_arguments(args: list[str]) -> list[str]:
    """Under torchrun only rank 0 keeps Hydra's files and log in the run folder."""
    from rmt_cli import distributed

    if distributed.environment().rank:
        return [*args, "hydra.output_subdir=null", "hydra.job_logging.root.handlers=[]"]
    return args


def check_writable(args: list[str], multirun: bool) -> None:
    """The run folder (hydra.run.dir / hydra.sweep.dir, default under outputs/ here) must be writable."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = given_folder(args, key)
    try:
        if given is None:
            writable = os.access(Path.cwd(), os.W_OK | os.X_OK)
        else:  # Hydra creates it next anyway; creating it here turns a failure into one clear line
            Path(given).mkdir(parents=True, exist_ok=True)
            writable = os.access(given, os.W_OK | os.X_OK)
    except OSError as error:
        writable, given = False, f"{given} ({error.strerror})"
    if not writable:
        raise UsageError(f"cannot write the run folder {given or Path.cwd() / 'outputs'}; "
                         f"choose another with {key}=DIR")


def run_hydra(config_name: str, task_function: Callable, args: list[str]) -> None:
    """Run `task_function(cfg)` as a Hydra app named `config_name`, with `args` as its command line."""
    import hydra

    from rmt_cli import run_folder, sweep

    hydra_main = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    overrides, multirun = split_overrides(args)
    printing = PRINTING_FLAGS & set(args)
    if multirun and printing:
        raise UsageError(f"-m runs a sweep and {sorted(printing)[0]} prints without running: give one of them")
    if PRINT_ONLY_FLAGS & set(args):  # Hydra prints and runs nothing
        if printing:
            check_composes(config_name, overrides)
        sys.argv = [f"rmt-{config_name}", *args]
        hydra_main(lambda cfg: None)()
        return
    composed = None
    if multirun:
        check_sweep_composes(config_name, overrides)
    else:
        composed = check_composes(config_name, overrides)
        check_config(composed, config_name)
    given = given_folder(args, "hydra.sweep.dir" if multirun else "hydra.run.dir")
    before = run_folder.snapshot(Path(given)) if given else None
    args, folder = own_folder(config_name, args, composed, multirun)
    if config_name == "train" and not multirun:
        args = data_parallel_arguments(args)
    check_writable(args, multirun)
    sys.argv = [f"rmt-{config_name}", *args]
    task = partial(run_task, config_name, task_function, multirun)
    if multirun:
        hydra_main(task)()
        sweep.report_failures(folder)
        return
    try:
        with run_folder.locked(folder) if folder is not None and writes_run(config_name) else nullcontext():
            hydra_main(task)()
    except SystemExit as exit_:
        if exit_.code and folder is not None and writes_run(config_name):
            run_folder.remove_if_unused(folder, before)
        raise


def check_config(cfg, config_name: str) -> None:
    """Types, ranges and allowed values of the keys a command reads, before anything runs."""
    from rmt_cli.config_check import check

    check(cfg, config_name)


def writes_run(config_name: str) -> bool:
    """Whether this process writes a run folder: every command but preview, except on data-parallel ranks other
    than 0."""
    if config_name == "preview":
        return False
    if config_name != "train":
        return True
    from rmt_cli import distributed

    return distributed.environment().writer


def run_task(config_name: str, task_function: Callable, multirun: bool, cfg) -> None:
    """One run of a command (or one point of a sweep), its errors one line each. A single run's config was checked
    and its folder locked by run_hydra; each point of a sweep has its config checked and its own folder locked
    here, and a point's error is recorded while the next point runs."""
    from hydra.core.hydra_config import HydraConfig

    from rmt_cli import run_folder, sweep

    if not multirun:
        report_errors(lambda: task_function(cfg))
        return
    folder = Path(HydraConfig.get().runtime.output_dir)

    def run():
        check_config(cfg, config_name)
        with run_folder.locked(folder) if writes_run(config_name) else nullcontext():
            task_function(cfg)

    try:
        run()
    except RmtError as error:
        if debug_enabled():
            raise
        sweep.record_failure(Path(HydraConfig.get().sweep.dir), list(HydraConfig.get().overrides.task), error)
        if writes_run(config_name):
            run_folder.remove_if_unused(folder, None)
