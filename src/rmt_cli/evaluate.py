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
def predict(experiment, factory: SampleFactory, samples: list, batch_size: int) -> np.ndarray:
    """Predicted label per sample. Only the memory and the current segment live on the device at any time."""
    model, device = experiment.model, experiment.device
    was_training = model.training
    model.eval()
    predictions = np.empty(len(samples), dtype=np.int64)
    for first in range(0, len(samples), batch_size):
        plan = BatchPlan.right_aligned(samples[first:first + batch_size])
        steps = (torch.from_numpy(step_tokens(factory, plan, t)).to(device, non_blocking=True)
                 for t in range(plan.n_steps))
        with experiment.autocast():
            out = model(steps, batch=len(plan.samples), n_steps=plan.n_steps)
        predictions[first + plan.order] = out.logits.argmax(-1).cpu().numpy()
    model.train(was_training)
    return predictions


def accuracy(experiment, factory: SampleFactory, samples: list, batch_size: int) -> float:
    labels = np.array([s.label for s in samples])
    return float(np.mean(predict(experiment, factory, samples, batch_size) == labels))


def checkpoint_config(cfg, checkpoint_meta: dict):
    """The run's config, with what the user overrode on this command line applied on top.

    Nodes the user re-selected (`task=detect`) come from the fresh composition; single keys (`task.segments=8`)
    are copied onto the run's node; everything else is the run's.
    """
    from hydra.core.hydra_config import HydraConfig

    run = OmegaConf.create(checkpoint_meta["config"])
    merged = OmegaConf.merge(run, {k: cfg[k] for k in ("checkpoint", "samples", "batch_size", "device")})
    for override in HydraConfig.get().overrides.task:
        key = override.lstrip("+~").split("=", 1)[0]
        if key in ("checkpoint", "samples", "batch_size", "device"):
            continue
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    return merged


def check_model_matches(cfg, meta: dict) -> None:
    from rmt_cli.errors import UsageError

    trained = OmegaConf.create(meta["config"])
    for key in ("memory.size", "segment.length", "backbone.name"):
        if OmegaConf.select(cfg, key) != OmegaConf.select(trained, key):
            raise UsageError(f"the checkpoint was trained with {key}={OmegaConf.select(trained, key)}, "
                             f"not {OmegaConf.select(cfg, key)}; drop that override to evaluate it")


def evaluate_from_config(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    from rmt_cli.checkpoint import find_checkpoint, load_weights, read_meta
    from rmt_cli.experiment import build_experiment

    folder = find_checkpoint(Path(cfg.checkpoint))
    meta = read_meta(folder)
    cfg = checkpoint_config(cfg, meta)
    check_model_matches(cfg, meta)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    experiment = build_experiment(cfg, cfg.device, with_training_data=False)
    load_weights(folder, experiment.model)
    segments = int(cfg.task.segments or meta["max_segments"])
    samples = experiment.eval_data.sample_set("test", int(cfg.task.eval_seed), segments, int(cfg.samples))
    start = time.perf_counter()
    acc = accuracy(experiment, experiment.eval_data, samples, int(cfg.batch_size))
    seconds = time.perf_counter() - start
    result = {"checkpoint": str(folder), "task": cfg.task.name, "segments": segments, "samples": len(samples),
              "accuracy": acc, "seconds": round(seconds, 3),
              "content_tokens": segments * experiment.eval_data.content_length}
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    print(f"{cfg.task.name}: accuracy {acc:.2%} on {len(samples)} test samples of {segments} segments "
          f"({result['content_tokens']:,} tokens each) in {seconds:.1f} s — {folder}")
