"""`rmt reproduce`: the results protocol. Train a preset for every task and seed, extrapolate every run on the fixed
test sets, and summarise them as mean, min and max over seeds, never the best of several attempts.

    rmt reproduce run OUT --tasks memorize,detect,reasoning --seeds 0,1,2     (one GPU: all runs side by side)
    rmt reproduce run OUT --parallel 1                                        (one job at a time, each alone on it)
    rmt reproduce run OUT2 --init-from OUT --override 'curriculum.stages=[...]'  (every seed of OUT trained on)
    rmt reproduce summarize OUT --into results/paper                          (summary.json + plot)

This module runs the protocol; reproduce_summary.py summarises a run folder.

A run folder OUT holds plan.json (what was asked, the card), and OUT/TASK/seedN/{train,extrapolate} with each
command's output, wall time and exit code, so a summary can always be traced back to the commands that made it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmt_cli.errors import RmtError, UsageError

PLAN = "plan.json"


def seed_folder(out: Path, task: str, seed: int) -> Path:
    return out / task / f"seed{seed}"


def parse_list(text: str, what: str, cast=str) -> list:
    try:
        values = [cast(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--{what} {text!r}: give a comma-separated list, e.g. --{what} "
                         f"{'0,1,2' if cast is int else 'memorize,detect'}") from None
    if not values:
        raise UsageError(f"--{what} is empty; give at least one")
    return values


# ---------------------------------------------------------------------------------------------
# Running: every training run at once (one GPU holds many MiniLM runs), or at most --parallel jobs at once, each
# extrapolation as soon as its training ends.

def rmt_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rmt_cli", *args]


def train_command(preset: str, task: str, seed: int, folder: Path, overrides: list[str]) -> list[str]:
    return rmt_command("train", f"experiment={preset}_{task}", f"seed={seed}", f"hydra.run.dir={folder / 'train'}",
                       *overrides)


class TrainingCannotStart(RmtError):
    """The `rmt train` of one task would fail before training (`error`: its preset's noise is not downloaded, an
    override does not fit it); said before any run starts, with that error's exit code."""

    def __init__(self, task: str, preset: str, error: RmtError):
        from rmt_cli.user_messages import user_message

        self.exit_code = error.exit_code
        super().__init__(f"{task} cannot start (experiment={preset}_{task}): {user_message(error)}")


def check_trainings_can_start(preset: str, tasks: list[str], overrides: list[str]) -> None:
    """Compose every task's training config and find its noise files, so that what would stop each of its seeds a
    few seconds in (a corpus not downloaded, a bad override) is one line before anything runs."""
    from rmt_cli.corpus.load import check_noise_files
    from rmt_cli.hydra_runner import check_composes, check_config

    for task in tasks:
        try:
            composed = check_composes("train", [f"experiment={preset}_{task}", *overrides])
            check_config(composed, "train")
            check_noise_files(composed.noise)
        except RmtError as error:
            raise TrainingCannotStart(task, preset, error) from None


def backbone_overrides(overrides: list[str]) -> list[str]:
    """The training overrides that chose the backbone (`backbone=...`, `backbone.name_or_path=...`): a checkpoint
    may not choose code by itself (code_trust.py), so the user's own choice is repeated to the extrapolation."""
    return [item for item in overrides if item.split("=", 1)[0].lstrip("+~").split(".", 1)[0] == "backbone"]


def extrapolate_command(folder: Path, segments: list[int], samples: int, batch_size: int,
                        overrides: Sequence[str] = (), name: str = "extrapolate") -> list[str]:
    """Task, noise and model come from the trained run's checkpoint; the backbone overrides of its training are
    repeated. The rows go to folder/name."""
    return rmt_command("extrapolate", "--checkpoint", str(folder / "train"),
                       "--segments", ",".join(map(str, segments)), "--samples", str(samples),
                       "--batch-size", str(batch_size), f"hydra.run.dir={folder / name}",
                       *backbone_overrides(list(overrides)))


@dataclass(frozen=True)
class Beyond:
    """One longer extrapolation of one seed of every task, once its main extrapolation has ended: lengths past the
    protocol's, on fewer samples, summarised apart from the means (reproduce_summary.extra_rows)."""

    segments: int
    samples: int = 100
    seed: int = 0

    @property
    def name(self) -> str:
        return f"extrapolate_{self.segments}"

    def applies(self, seed: int) -> bool:
        return seed == self.seed

    @property
    def label(self) -> str:
        """The job as one seed's: in progress lines and as its column of `rmt reproduce status`."""
        return f"extrapolation to {self.segments} segments"

    def of(self, task: str, seed: int) -> str:
        return f"extrapolation of {task} seed {seed} to {self.segments} segments"

    def job(self, folder: Path, overrides: Sequence[str]) -> Job:
        command = extrapolate_command(folder, [self.segments], self.samples, self.samples, overrides, self.name)
        return Job(command, folder / f"{self.name}.out", folder / f"{self.name}.status.json")


@dataclass(frozen=True)
class NoiseCheck:
    """Every seed tested again, once its main extrapolation has ended, with noise from novels it was trained on
    (`noise.eval_documents`, noise=austen): a memory that fails on unseen text scores far higher here than on the
    held-out test; one that fails on length scores the same. Kept apart from the test (summary.json `other_tests`)."""

    documents: tuple[str, ...]
    segments: tuple[int, ...] = (32, 512)
    samples: int = 200

    name = "extrapolate_training_noise"

    def applies(self, seed: int) -> bool:
        return True

    @property
    def label(self) -> str:
        """The job as one seed's: in progress lines and as its column of `rmt reproduce status`."""
        return f"test on noise from {', '.join(self.documents)}"

    def of(self, task: str, seed: int) -> str:
        return f"test of {task} seed {seed} on noise from {', '.join(self.documents)}"

    def job(self, folder: Path, overrides: Sequence[str]) -> Job:
        command = [*extrapolate_command(folder, list(self.segments), self.samples, self.samples, overrides,
                                        self.name), f"noise.eval_documents=[{','.join(self.documents)}]"]
        return Job(command, folder / f"{self.name}.out", folder / f"{self.name}.status.json")


def requested_followers(seeds: list[int], samples: int, beyond: int | None = None, beyond_samples: int = 100,
                        beyond_seed: int = 0, noise_check: str | None = None,
                        noise_check_segments: str = "32,512") -> tuple[Beyond | None, NoiseCheck | None]:
    """The --beyond extrapolation and --noise-check test asked for on the command line (None where not), checked
    against the run's seeds; the noise check tests `samples` samples per length, as the run's main test."""
    longer = None
    if beyond is not None:
        if beyond < 1 or beyond_samples < 1:
            raise UsageError(f"--beyond {beyond} and --beyond-samples {beyond_samples} must be at least 1")
        if beyond_seed not in seeds:
            raise UsageError(f"--beyond-seed {beyond_seed} is not one of --seeds {','.join(map(str, seeds))}")
        longer = Beyond(beyond, beyond_samples, beyond_seed)
    check = None
    if noise_check is not None:
        check = NoiseCheck(tuple(parse_list(noise_check, "noise-check")),
                           tuple(parse_list(noise_check_segments, "noise-check-segments", int)), samples)
    return longer, check


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def check_gpu(runs: int, allow_cpu: bool) -> None:
    """The protocol's presets are sized for a GPU, and by default it starts every training at once: on a machine
    without one they would fill its memory together (and take hours each), so that is refused unless asked for."""
    if not allow_cpu and device_name() == "cpu":
        raise UsageError(f"this machine has no CUDA GPU: the protocol's {runs} GPU-sized trainings would run side "
                         "by side on its CPU; run it on a GPU machine, or pass --allow-cpu")


class Job:
    """One command of one (task, seed), its output in `log`, its exit code and wall time in `status`. A command run
    again (`rmt reproduce resume`) adds its output below the earlier attempt's, and the earlier status is removed
    first, so that it never stands for this attempt."""

    def __init__(self, command: list[str], log: Path, status: Path):
        self.command, self.log, self.status = command, log, status
        log.parent.mkdir(parents=True, exist_ok=True)
        status.unlink(missing_ok=True)
        self.started = time.time()
        with log.open("a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and not self.status.exists():
            self.status.write_text(json.dumps({"command": self.command, "exit_code": code,
                                               "seconds": round(time.time() - self.started, 1)}, indent=1))
        return code


def job_status(status: Path) -> dict | None:
    """A job's status file (command, exit_code, seconds) once the job has ended; None before, or if unreadable."""
    try:
        ended = json.loads(status.read_text())
    except (OSError, ValueError):
        return None
    return ended if isinstance(ended, dict) and {"exit_code", "seconds"} <= ended.keys() else None


def succeeded(status: Path) -> bool:
    """Whether a job's status file says it exited 0."""
    ended = job_status(status)
    return ended is not None and ended["exit_code"] == 0


def read_plan(out: Path) -> dict:
    """The plan.json of a protocol run folder."""
    try:
        return json.loads((out / PLAN).read_text())
    except (OSError, ValueError):
        raise UsageError(f"{out} holds no plan of `rmt reproduce run` ({PLAN})") from None


def earlier_run(init_from: Path, tasks: list[str], seeds: list[int]) -> Path:
    """The OUT of `--init-from`, resolved, once every task and seed asked for has a finished training there."""
    for task in tasks:
        for seed in seeds:
            if not succeeded(seed_folder(init_from, task, seed) / "train.status.json"):
                raise UsageError(f"--init-from {init_from}: {seed_folder(init_from, task, seed)} holds no finished "
                                 "training; give the OUT of an `rmt reproduce run` that trained every task and seed "
                                 "asked for")
    return init_from.resolve()


def run_protocol(out: Path, preset: str, tasks: list[str], seeds: list[int], segments: list[int], samples: int,
                 batch_size: int, train_overrides: list[str], echo=print, beyond: Beyond | None = None,
                 noise_check: NoiseCheck | None = None, parallel: int | None = None,
                 init_from: Path | None = None) -> None:
    """Start the protocol in a new OUT: write its plan, then run it (follow_plan); `parallel` is the most jobs
    running at once (None: all of them); with `init_from` (the OUT of an earlier run) each task and seed trains from
    the weights that task and seed ended with there."""
    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        for seed in seeds:
            if (seed_folder(out, task, seed) / "train.status.json").exists():
                raise UsageError(f"{seed_folder(out, task, seed)} holds a finished training already; use a new OUT "
                                 f"folder, or `rmt reproduce resume {out}` to finish that run")
    plan = {"preset": preset, "tasks": tasks, "seeds": seeds, "segments": segments, "samples": samples,
            "batch_size": batch_size, "overrides": train_overrides, "parallel": parallel,
            "init_from": None if init_from is None else str(init_from),
            "card": device_name(), "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime()),
            "beyond": None if beyond is None else vars(beyond),
            "noise_check": None if noise_check is None else vars(noise_check)}
    (out / PLAN).write_text(json.dumps(plan, indent=1))
    follow_plan(out, plan, echo)


def resume_protocol(out: Path, echo=print, beyond: Beyond | None = None,
                    noise_check: NoiseCheck | None = None) -> None:
    """Finish a run of the protocol that was interrupted: what its plan still lacks runs, nothing else. A `beyond`
    extrapolation or `noise_check` test given here joins the plan (in place of the one it had, whose files stay
    and are still summarised), so a finished run gets it without training again."""
    plan = read_plan(out)
    if "overrides" not in plan:
        raise UsageError(f"{out} was started by an rmt that did not record its overrides in {PLAN}; it cannot be "
                         "resumed (start a new OUT folder)")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    plan["resumed"] = [*plan.get("resumed", []), now]
    for key, follower in (("beyond", beyond), ("noise_check", noise_check)):
        if follower is not None and follower not in plan_followers(plan):
            plan[key] = vars(follower)
            plan["added"] = [*plan.get("added", []), {key: vars(follower), "at": now}]
    (out / PLAN).write_text(json.dumps(plan, indent=1))
    follow_plan(out, plan, echo)


def plan_followers(plan: dict) -> list[Beyond | NoiseCheck]:
    """The jobs that follow a seed's main extrapolation in this plan (--beyond, --noise-check)."""
    followers: list[Beyond | NoiseCheck] = []
    if plan.get("beyond") is not None:
        followers.append(Beyond(**plan["beyond"]))
    if plan.get("noise_check") is not None:  # JSON gave its tuples back as lists
        check = plan["noise_check"]
        followers.append(NoiseCheck(tuple(check["documents"]), tuple(check["segments"]), check["samples"]))
    return followers


Step = tuple[str, int, str | Beyond | NoiseCheck]  # (task, seed, "train" | "extrapolate" | a follower)


def follow_plan(out: Path, plan: dict, echo=print) -> None:
    """Run the plan's jobs that have not succeeded yet: every training (one that was interrupted resumes from its
    last checkpoint, as `rmt train` does in its own folder), each extrapolation as soon as its training has ended,
    then the seed's --beyond extrapolation and --noise-check test. All at once, or at most the plan's "parallel"
    jobs at a time (absent or null: all at once); a seed already begun gets its next jobs before any new training
    starts, so with 1 each seed is trained, extrapolated and followed up alone, in the plan's order."""
    segments, samples, batch_size, overrides = plan["segments"], plan["samples"], plan["batch_size"], plan["overrides"]
    followers = plan_followers(plan)
    limit = plan.get("parallel")

    def new_job(step: Step) -> Job:
        task, seed, what = step
        folder = seed_folder(out, task, seed)
        if not isinstance(what, str):
            return what.job(folder, overrides)
        if what == "train":
            return Job(train_command(plan["preset"], task, seed, folder, [*overrides, *init_from(task, seed)]),
                       folder / "train.out", folder / "train.status.json")
        return Job(extrapolate_command(folder, segments, samples, batch_size, overrides), folder / "extrapolate.out",
                   folder / "extrapolate.status.json")

    def init_from(task: str, seed: int) -> list[str]:
        """The override that starts a seed's training where the same task and seed of the plan's earlier run
        ended (--init-from), if any."""
        source = plan.get("init_from")
        return [] if source is None else [f"trainer.init_from={seed_folder(Path(source), task, seed) / 'train'}"]

    def name(step: Step) -> str:
        task, seed, what = step
        if not isinstance(what, str):
            return what.of(task, seed)
        return f"{'training' if what == 'train' else 'extrapolation'} {task} seed {seed}"

    waiting: list[tuple[Step, str | None]] = []  # in the plan's order, each with the line that announces its start
    for task, seed in ((task, seed) for task in plan["tasks"] for seed in plan["seeds"]):
        folder = seed_folder(out, task, seed)
        if not succeeded(folder / "train.status.json"):
            again = (folder / "train").exists()
            waiting.append(((task, seed, "train"), f"started training {task} seed {seed}" + (
                " again (it continues from its last checkpoint, if it saved one)" if again else "")))
        elif not succeeded(folder / "extrapolate.status.json"):
            waiting.append(((task, seed, "extrapolate"), f"{task} seed {seed} was trained; started its extrapolation"))
        else:
            waiting += [((task, seed, follower), f"{task} seed {seed} was extrapolated; started its {follower.label}")
                        for follower in followers
                        if follower.applies(seed) and not succeeded(folder / f"{follower.name}.status.json")]
    running: dict[Step, Job] = {}

    def start_what_fits() -> None:
        if limit is not None:  # jobs of seeds already begun before any new training (a stable sort: else in order)
            waiting.sort(key=lambda entry: entry[0][2] == "train")
        while waiting and (limit is None or len(running) < limit):
            step, line = waiting.pop(0)
            running[step] = new_job(step)
            if line is not None:
                echo(line)

    start_what_fits()
    trainings = sum(step[2] == "train" for step, _ in waiting)
    if trainings:
        echo(f"{'1 training waits' if trainings == 1 else f'{trainings} trainings wait'} for a free slot "
             f"(--parallel {limit})")
    while running:
        time.sleep(5)
        for step, job in list(running.items()):
            code = job.poll()
            if code is None:
                continue
            del running[step]
            echo(f"{name(step)} ended (exit {code}) after {time.time() - job.started:.0f} s")
            task, seed, what = step
            if code == 0 and what == "train":
                waiting.append(((task, seed, "extrapolate"), None))
            elif code == 0 and what == "extrapolate":
                waiting += [((task, seed, follower), None) for follower in followers if follower.applies(seed)]
        start_what_fits()
