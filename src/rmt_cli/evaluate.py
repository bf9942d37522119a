"""`rmt eval`: accuracy of a trained run on a fixed, seeded test set, written to eval.json in the run folder."""

from __future__ import annotations

import json
import time

from rmt_cli.experiment import apply_inference_settings
from rmt_cli.inference import accuracy
from rmt_cli.trained_run import command_run_folder, load_trained


def evaluate_from_config(cfg) -> None:
    cfg, meta, folder, experiment = load_trained(cfg)
    apply_inference_settings(experiment.model, cfg)
    segments = meta["max_segments"] if cfg.task.segments is None else cfg.task.segments
    samples = experiment.eval_data.sample_set("test", cfg.task.eval_seed, segments, cfg.samples)
    start = time.perf_counter()
    acc = accuracy(experiment, experiment.eval_data, samples, cfg.batch_size, cuda_graphs=cfg.cuda_graphs)
    seconds = time.perf_counter() - start
    result = {"checkpoint": str(folder), "task": cfg.task.name, "segments": segments, "samples": len(samples),
              "accuracy": acc, "seconds": round(seconds, 3),
              "content_tokens": segments * experiment.eval_data.content_length}
    (command_run_folder(cfg) / "eval.json").write_text(json.dumps(result, indent=2))
    print(f"{cfg.task.name}: accuracy {acc:.2%} on {len(samples)} test samples of {segments} segments "
          f"({result['content_tokens']:,} tokens each) in {seconds:.1f} s — {folder}")
