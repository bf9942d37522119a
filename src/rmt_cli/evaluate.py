"""`rmt eval`: accuracy of a trained run on a fixed, seeded test set, written to eval.json in the run folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from rmt_cli.inference import accuracy
from rmt_cli.trained_run import load_trained


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
