"""Where training metrics go: `metrics.jsonl` always, plus the backends of the `logger` config group.

`metrics.jsonl` is the source of truth (a resumed run truncates it, `rmt export` reads it). Every number of a line
also goes to each backend, tagged `kind/name` (`train/loss`, `val/accuracy`), at the run's global step: the steps
of earlier curriculum stages plus the step within the stage.
"""

from __future__ import annotations

import importlib.util
import json
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.metrics import MetricsLog

NOT_SCALARS = ("kind", "time", "stage", "step", "segments")  # position in the run, not measurements
# Fields of a metrics line that depend on the wall clock: they differ between two runs that are otherwise the same.
WALL_CLOCK = ("time", "tokens_per_s", "model_tflops_per_s", "mfu", "peak_gpu_mb")


def chosen(cfg) -> dict:
    """The `logger` group's selections (name -> settings; the schema's other backends are null), checked: their
    packages installed."""
    selected = {name: settings for name, settings in cfg.logger.items() if settings is not None}
    for name in selected:
        if name != "jsonl" and importlib.util.find_spec(name) is None:
            raise UsageError(f"logger={name} needs the {name} package: pip install 'rmt-cli[{name}]', "
                             f"or leave {name} out of logger=[...]")
    return selected


class TensorBoardBackend:
    def __init__(self, folder: Path, info: dict, first_step: int):
        from torch.utils.tensorboard import SummaryWriter

        # A resumed run purges the events an earlier attempt wrote from first_step on, as it truncates metrics.jsonl.
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=first_step if first_step > 1 else None)
        self.writer.add_text("run_info", "```\n" + json.dumps(info, indent=2) + "\n```")

    def log(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbBackend:
    def __init__(self, settings, run_dir: Path, config: dict, info: dict):
        import wandb

        quiet = wandb.Settings(silent=True, console="off")
        try:
            self.run = wandb.init(mode=settings.mode, project=settings.project,
                                  entity=settings.entity, dir=str(run_dir), name=run_dir.name,
                                  config={**config, "run_info": info}, settings=quiet)
        except Exception as error:  # wandb raises its own types for a missing login, network and settings
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RuntimeFailure(f"cannot start W&B ({first}); run `wandb login`, or log offline with "
                                 "logger.wandb.mode=offline") from None

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class Metrics(MetricsLog):
    """metrics.jsonl plus the chosen backends: a context manager that opens them, after a resumed run has
    truncated metrics.jsonl, and closes them at the end.

    openers: one callable per backend, taking the global step the backend's first line will have.
    """

    def __init__(self, path: Path, openers: list[Callable], stage_steps: list[int], enabled: bool = True):
        super().__init__(path, enabled)
        self.openers = openers
        self.backends: list[TensorBoardBackend | WandbBackend] = []
        self.stage_offsets = {number: sum(stage_steps[:number - 1]) for number in range(1, len(stage_steps) + 1)}

    def global_step(self, fields: dict) -> int:
        return self.stage_offsets.get(fields["stage"], 0) + int(fields["step"])

    def write(self, **fields) -> None:
        super().write(**fields)
        if not (self.enabled and self.backends and "step" in fields):  # lines of no step (a summary) stay in jsonl
            return
        kind = fields["kind"]
        scalars = {f"{kind}/{'accuracy' if key == 'val_accuracy' else key}": float(value)
                   for key, value in fields.items()
                   if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool)}
        if kind == "val":
            scalars[f"val/accuracy_stage{fields['stage']}"] = float(fields["val_accuracy"])
        for backend in self.backends:
            backend.log(scalars, self.global_step(fields))

    def __enter__(self):
        if self.enabled and self.openers:
            kept = [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []
            first = 1 + max((self.global_step(line) for line in kept if "step" in line), default=0)
            self.backends = [open_backend(first) for open_backend in self.openers]
        return self

    def __exit__(self, *exc) -> None:
        for backend in self.backends:
            backend.close()
        self.backends = []


def open_metrics(cfg, run_dir: Path, stage_steps: list[int], info: dict, enabled: bool = True) -> Metrics:
    """The run's metrics; its backends open on entering it, on the writing rank only."""
    from omegaconf import OmegaConf

    openers: list[Callable] = []
    for name, settings in chosen(cfg).items():
        if name == "tensorboard":
            openers.append(partial(TensorBoardBackend, Path(run_dir) / settings.dir, info))
        elif name == "wandb":  # every attempt of a resumed run is a W&B run of its own: nothing to purge
            config = OmegaConf.to_container(cfg, resolve=True)
            openers.append(lambda first, wandb=settings, config=config:
                           WandbBackend(wandb, Path(run_dir), config, info))
    return Metrics(Path(run_dir) / "metrics.jsonl", openers, stage_steps, enabled)


def peak_gpu_memory(device: torch.device) -> dict:
    """{"peak_gpu_mb": ...} since the process started, on a GPU; nothing elsewhere."""
    if device.type != "cuda":
        return {}
    return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
