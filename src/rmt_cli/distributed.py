"""Data-parallel training over several processes: where this process stands, the process group, collectives.

`torchrun --nproc_per_node N -m rmt_cli train ...` starts N processes (ranks); `trainer.devices=N` makes `rmt train`
start them itself through torchrun; a submitit job with N tasks (`hydra.launcher.tasks_per_node=N`) is read the
same way. Every rank builds the same model and draws its own share of each batch; DistributedDataParallel averages
the gradients, so one step of N ranks equals one step of a single process over the whole global batch. Rank 0 alone
writes the run folder. With one process every helper here is a no-op, so the trainer has a single code path.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import typer

from rmt_cli import worker_errors
from rmt_cli.errors import Interrupted, RuntimeFailure, UsageError


SHUTDOWN_SECONDS = 300  # how long torchrun lets a signalled worker finish its step and save before killing it


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0  # rank within this host: the GPU it uses

    @property
    def writer(self) -> bool:
        return self.rank == 0


def environment() -> Ranks:
    """This process's place in a torchrun job or a multi-task submitit job; a lone process otherwise."""
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        if JobEnvironment().num_tasks > 1:  # sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT for env://
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def join(ranks: Ranks) -> None:
    """Join the process group (once per process): gloo for CPU tensors, and NCCL for CUDA tensors when a GPU
    is visible."""
    if ranks.world == 1 or dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local)
    dist.init_process_group(backend, timeout=timedelta(minutes=30))


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wants_cuda(requested: str) -> bool:
    """Does a `trainer.device` setting mean GPUs (cuda, cuda:N, or auto with one visible)?"""
    return requested.startswith("cuda") or (requested == "auto" and torch.cuda.is_available())


def device_name(requested: str, ranks: Ranks) -> str:
    """The device of this rank: its own GPU (cuda:LOCAL_RANK) when the config asks for CUDA (or auto finds one)."""
    if ranks.world == 1:
        return requested
    return f"cuda:{ranks.local}" if wants_cuda(requested) else "cpu"


def share_string(value: str) -> str:
    """Rank 0's `value`, on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def total(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over all ranks."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise: is the flag set on at least one rank? (Every rank then acts on the same decision.)"""
    return [value > 0 for value in total([float(f) for f in flags], device)]


def gather(value) -> list:
    """Every rank's `value` (any picklable object), in rank order; [value] for a lone process."""
    if not dist.is_initialized():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def pass_on(signum: int, handler) -> None:
    """After a stop on `signum` was saved, call the handler that was installed before ours, if it is a Python
    function: under submitit it requeues the job (and exits), and the requeued job resumes from the save."""
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signum, None)


STOPPED = "training stopped; run the same command again to resume"  # a worker stopped without an error of its own
ERROR_KINDS = {UsageError.exit_code: UsageError, Interrupted.exit_code: Interrupted}  # any other code: RuntimeFailure


def launch_workers(devices: int, arguments: list[str]) -> None:
    """Run `rmt train ARGUMENTS` as `devices` data-parallel processes through torchrun, and wait for them.

    Ctrl-C reaches the workers from the terminal; SIGTERM and SIGUSR2 sent to this process go to torchrun, which
    passes them on. Either way each worker finishes its step, rank 0 saves, and the same command resumes. A SIGUSR2
    is then handed to the handler this process had before (under submitit: requeue the job).

    A worker that fails leaves its one-line error and exit code in a folder of this process (see worker_errors);
    the first of them becomes this process's error, with the same message and exit code.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}",
               "--signals-to-handle=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR2", f"--shutdown-timeout={SHUTDOWN_SECONDS}",
               "-m", "rmt_cli", "train", *arguments]
    received = []
    with tempfile.TemporaryDirectory(prefix="rmt-worker-errors-") as errors_folder:
        environment = {**os.environ, worker_errors.FOLDER_VARIABLE: errors_folder}
        # torchrun's stderr (its workers' too) is held back: its report of a failure is noise next to the workers'
        # one-line errors, and its tail is shown only when no worker left an error.
        with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment) as torchrun:
            def note(signum, frame):
                received.append(signum)
                if signum != signal.SIGINT:  # the terminal sends Ctrl-C to torchrun and the workers already
                    torchrun.send_signal(signum)

            previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
            try:
                stderr = torchrun.communicate()[1]
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        failures = worker_errors.read(errors_folder)
        finished = worker_errors.finished_ranks(errors_folder)
    if torchrun.returncode == 0:
        return
    first = first_failure(failures)
    message = first.message if first is not None and first.message else STOPPED
    if received:
        pass_on(received[0], previous[received[0]])
        raise Interrupted(message)
    if first is not None:
        raise ERROR_KINDS.get(first.exit_code, RuntimeFailure)(message)
    account = crash_account(stderr, torchrun.returncode)
    if finished >= set(range(devices)):  # every rank's training had returned, rank 0's with all saved
        typer.secho(f"warning: the run finished, but a worker crashed as the workers closed their connections "
                    f"({account})", fg=typer.colors.YELLOW, err=True)
        return
    raise RuntimeFailure(f"data-parallel workers failed ({account})")


TORCHRUN_LOG_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ torch/distributed/")


def crash_account(stderr: str, exit_code: int) -> str:
    """One line on workers that died without an error of their own (a signal, a crash in native code): the rank
    and signal torchrun names as the root cause, then the workers' last lines of stderr, which say why; torchrun's
    own report (its log lines, its traceback, its banner) is left out."""
    lines = stderr.strip().splitlines()
    workers = []  # the lines before torchrun's report of the failure, less its log lines and its banner
    for line in lines:
        if TORCHRUN_LOG_LINE.match(line):
            if "failed (exitcode" in line:
                break
        elif line.strip() and not line.startswith("*****") and "OMP_NUM_THREADS" not in line:
            workers.append(line.strip())
    root = stderr.rpartition("Root Cause")[2]  # torchrun's report: "rank : 1 (...)", "exitcode : -6 (pid: N) (SIGABRT)"
    rank, code = re.search(r"rank\s*:\s*(\d+)", root), re.search(r"exitcode\s*:\s*(-?\d+)", root)
    signal_name = re.search(r"\((SIG[A-Z0-9]+)\)", root)
    cause = f"torchrun exit code {exit_code}"
    if rank and code:
        cause = f"rank {rank[1]} ended with exit code {code[1]}" + (f" ({signal_name[1]})" if signal_name else "")
    said = workers[-3:] if workers else lines[-5:]
    return " | ".join([cause, *said])


def first_failure(failures: list[worker_errors.WorkerError]) -> worker_errors.WorkerError | None:
    """The first worker error that has a message (the others often follow from it: a peer that went away, the stop
    torchrun then sends); the first of all when none has."""
    return next((failure for failure in failures if failure.message), failures[0] if failures else None)
