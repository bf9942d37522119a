"""Where training metrics go: `metrics.jsonl` always, plus the backends of the `logger` config group.

`metrics.jsonl` is the source of truth (a resumed run truncates it, `rmt export` reads it). Every number of a line
also goes to each backend, tagged `kind/name` (`train/loss`, `val/accuracy`), at the run's global step: the steps
of earlier curriculum stages plus the step within the stage.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from rmt_cli.errors import UsageError
from rmt_cli.metrics import MetricsLog

BACKENDS = ("jsonl", "tensorboard", "wandb")
NOT_SCALARS = ("kind", "time", "stage", "step", "segments")  # position in the run, not measurements
# Fields of a metrics line that depend on the wall clock: they differ between two runs that are otherwise the same.
WALL_CLOCK = ("time", "tokens_per_s", "model_tflops_per_s", "mfu", "peak_gpu_mb")


def chosen(cfg) -> dict:
    """The `logger` group's selections (name -> settings), checked: known names, their packages installed."""
    selected = dict(cfg.get("logger") or {})
    for name in selected:
        if name not in BACKENDS:
            raise UsageError(f"logger {name} is unknown; use some of {', '.join(BACKENDS)}, "
                             "e.g. logger=[jsonl,tensorboard]")
        if name != "jsonl" and importlib.util.find_spec(name) is None:
            raise UsageError(f"logger={name} needs the {name} package: pip install 'rmt-cli[{name}]', "
                             f"or leave {name} out of logger=[...]")
    return selected


class TensorBoardBackend:
    def __init__(self, folder: Path, info: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("run_info", "```\n" + json.dumps(info, indent=2) + "\n```")

    def log(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbBackend:
    def __init__(self, settings, run_dir: Path, config: dict, info: dict):
        import wandb

        self.run = wandb.init(mode=str(settings.mode), project=str(settings.project), entity=settings.get("entity"),
                              dir=str(run_dir), name=run_dir.name, config={**config, "run_info": info},
                              settings=wandb.Settings(silent=True, console="off"))

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class Metrics(MetricsLog):
    """metrics.jsonl plus the chosen backends; a context manager that flushes and closes them at the end."""

    def __init__(self, path: Path, backends: list, stage_steps: list[int], enabled: bool = True):
        super().__init__(path, enabled)
        self.backends = backends
        self.stage_offsets = {number: sum(stage_steps[:number - 1]) for number in range(1, len(stage_steps) + 1)}

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
        step = self.stage_offsets.get(fields["stage"], 0) + int(fields["step"])
        for backend in self.backends:
            backend.log(scalars, step)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for backend in self.backends:
            backend.close()
        self.backends = []


def open_metrics(cfg, run_dir: Path, stage_steps: list[int], info: dict, enabled: bool = True) -> Metrics:
    """The run's metrics: backends are opened on the writing rank only."""
    from omegaconf import OmegaConf

    backends = []
    if enabled:
        for name, settings in chosen(cfg).items():
            if name == "tensorboard":
                backends.append(TensorBoardBackend(Path(run_dir) / str(settings.dir), info))
            elif name == "wandb":
                backends.append(WandbBackend(settings, Path(run_dir), OmegaConf.to_container(cfg, resolve=True), info))
    return Metrics(Path(run_dir) / "metrics.jsonl", backends, stage_steps, enabled)


def peak_gpu_memory(device: torch.device) -> dict:
    """{"peak_gpu_mb": ...} since the process started, on a GPU; nothing elsewhere."""
    if device.type != "cuda":
        return {}
    return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}
