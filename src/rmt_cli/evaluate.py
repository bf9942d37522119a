"""Accuracy of a model on fixed sample sets, streamed segment by segment; and the `rmt eval` command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from rmt_cli.samples import BatchPlan, SampleFactory, step_tokens


@torch.inference_mode()
def predict(experiment, factory: SampleFactory, samples: list, batch_size: int,
            cuda_graphs: bool = False) -> np.ndarray:
    """Predicted label per sample (-1: a generated answer that is no label). Only the memory and the current
    segment live on the device at any time.

    cuda_graphs: on GPU, replay each full-batch segment step as a CUDA graph (see engine.SegmentGraph).
    """
    model, device = experiment.model, experiment.device
    was_training = model.training
    model.eval()
    predictions = np.empty(len(samples), dtype=np.int64)
    for first in range(0, len(samples), batch_size):
        plan = BatchPlan.right_aligned(samples[first:first + batch_size])
        steps = (to_device(step_tokens(factory, plan, t), device) for t in range(plan.n_steps))
        with experiment.autocast():
            predicted = experiment.head.predict(model, steps, batch=len(plan.samples), n_steps=plan.n_steps,
                                                cuda_graphs=cuda_graphs)
        predictions[first + plan.order] = predicted.cpu().numpy()
    model.train(was_training)
    return predictions


def to_device(tokens: np.ndarray, device: torch.device) -> torch.Tensor:
    """Copy a step's tokens without making the host wait for the GPU: pinned memory, asynchronous copy.

    The host assembles the next segments while the GPU still runs the previous ones; PyTorch's caching host
    allocator keeps each pinned block alive until its copy has finished.
    """
    tensor = torch.from_numpy(tokens)
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def correct_answers(predictions: np.ndarray, samples: list) -> int:
    return int(np.sum(predictions == np.array([s.label for s in samples])))


def accuracy(experiment, factory: SampleFactory, samples: list, batch_size: int, cuda_graphs: bool = False) -> float:
    return correct_answers(predict(experiment, factory, samples, batch_size, cuda_graphs), samples) / len(samples)


RUN_NODES = ("backbone", "task", "noise", "memory", "segment")  # what a checkpoint's own run config decides


def checkpoint_config(cfg, checkpoint_meta: dict):
    """The run's config, with what the user overrode on this command line applied on top.

    Nodes the user re-selected (`task=detect`) come from the fresh composition; single keys (`task.segments=8`)
    are copied onto the run's node; the command's own keys (checkpoint, samples, ...) come from `cfg`.
    """
    from hydra.core.hydra_config import HydraConfig

    saved = OmegaConf.create({k: v for k, v in checkpoint_meta["config"].items() if k in RUN_NODES})
    merged = OmegaConf.merge(saved, {k: cfg[k] for k in cfg if k not in RUN_NODES})
    for key in command_line_keys(HydraConfig.get().overrides.task):
        if key.split(".")[0] in RUN_NODES:
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    return merged


def command_line_keys(overrides) -> set[str]:
    """The config keys a list of Hydra overrides sets (`+a.b=1` and `a.b=1` both set `a.b`)."""
    return {override.lstrip("+~").split("=", 1)[0] for override in overrides}


def check_model_matches(cfg, meta: dict) -> None:
    from rmt_cli.errors import UsageError

    trained = OmegaConf.create(meta["config"])
    for key, default in (("memory.size", None), ("segment.length", None), ("backbone.name", None),
                         ("task.head", "classify")):
        wanted, used = OmegaConf.select(cfg, key, default=default), OmegaConf.select(trained, key, default=default)
        if wanted != used:
            raise UsageError(f"the checkpoint was trained with {key}={used}, not {wanted}; "
                             "drop that override to evaluate it")


def load_trained(cfg):
    """What every command that reads a checkpoint (or an `rmt export` folder) starts with: its folder and metadata,
    the run's config with this command line's overrides, and the experiment with the trained weights loaded.

    Returns (cfg, meta, folder, experiment).
    """
    from hydra.core.hydra_config import HydraConfig

    from rmt_cli import export
    from rmt_cli.checkpoint import load_weights, open_checkpoint
    from rmt_cli.code_trust import check_checkpoint_backbone
    from rmt_cli.config_check import check
    from rmt_cli.experiment import apply_inference_settings, build_experiment

    exported = export.is_export(cfg.checkpoint)
    if exported:  # its backbone loads from the folder the user named, with no code of its own
        folder = Path(cfg.checkpoint)
        meta = export.checkpoint_meta(folder)
    else:
        folder, meta = open_checkpoint(Path(cfg.checkpoint))
    cfg = checkpoint_config(cfg, meta)
    check(cfg, HydraConfig.get().job.name, unknown_keys=False)  # the run's values, as this command will use them
    user_keys = command_line_keys(HydraConfig.get().overrides.task)
    if not exported:
        check_checkpoint_backbone(OmegaConf.to_container(cfg.backbone), user_keys, folder)
    check_model_matches(cfg, meta)
    experiment = build_experiment(cfg, cfg.device, with_training_data=False, trained_labels=meta.get("labels"))
    if exported:
        export.load_rmt_weights(folder, experiment.model)
    else:
        load_weights(folder, experiment.model, verified=True)
    apply_inference_settings(experiment.model, cfg)
    return cfg, meta, folder, experiment


def evaluate_from_config(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    cfg, meta, folder, experiment = load_trained(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    segments = int(cfg.task.segments or meta["max_segments"])
    samples = experiment.eval_data.sample_set("test", int(cfg.task.eval_seed), segments, int(cfg.samples))
    start = time.perf_counter()
    acc = accuracy(experiment, experiment.eval_data, samples, int(cfg.batch_size),
                   cuda_graphs=bool(cfg.get("cuda_graphs", False)))
    seconds = time.perf_counter() - start
    result = {"checkpoint": str(folder), "task": cfg.task.name, "segments": segments, "samples": len(samples),
              "accuracy": acc, "seconds": round(seconds, 3),
              "content_tokens": segments * experiment.eval_data.content_length}
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    print(f"{cfg.task.name}: accuracy {acc:.2%} on {len(samples)} test samples of {segments} segments "
          f"({result['content_tokens']:,} tokens each) in {seconds:.1f} s — {folder}")
