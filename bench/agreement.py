"""Do the fast inference settings predict what the plain path predicts? Measured on a trained run's test sets.

    python bench/agreement.py RUN_DIR --segments 1,8,64 --samples 200 --batch-size 64 --out agreement.json

plain: `rmt eval`'s defaults (fp32 weights, bf16 autocast on GPU, CUDA graphs at every batch size).
fast: inference_dtype=bf16, CUDA graphs at every batch size; override with --fast (e.g. '{"inference_dtype":
"bf16", "compile_blocks": true}'; settings it leaves out are the plain path's, `rmt eval`'s defaults).
Per length: the test set `rmt eval --checkpoint RUN_DIR task.segments=N --samples S` reads, each path's accuracy, and
the share of samples on which both predict the same label (agreement).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rmt_cli.checkpoint import find_checkpoint, load_weights, read_meta
from rmt_cli.experiment import apply_inference_settings, build_experiment, inference_settings
from rmt_cli.inference import correct_answers, predict
from rmt_cli.schema import typed_config

PLAIN = {"inference_dtype": "fp32", "graph_max_rows": None}
FAST = {"inference_dtype": "bf16", "graph_max_rows": None}


def load(run_dir: Path, device: str, settings: dict):
    """The run's trained model with these inference settings applied; returns (experiment, run config, meta)."""
    folder = find_checkpoint(run_dir)
    meta = read_meta(folder)
    cfg = typed_config("train", meta["config"])
    experiment = build_experiment(cfg, device, with_training_data=False, trained_labels=meta.get("labels"))
    load_weights(folder, experiment.model)
    apply_inference_settings(experiment.model, inference_settings(**{**PLAIN, **settings}))
    return experiment, cfg, meta


def compare(plain, fast, segments: int, size: int, batch_size: int, seed: int) -> dict:
    samples = plain.eval_data.sample_set("test", seed, segments, size)
    predicted = [predict(experiment, experiment.eval_data, samples, batch_size, cuda_graphs=True)
                 for experiment in (plain, fast)]
    return {"segments": segments, "samples": len(samples),
            "plain_accuracy": correct_answers(predicted[0], samples) / len(samples),
            "fast_accuracy": correct_answers(predicted[1], samples) / len(samples),
            "agreement": float(np.mean(predicted[0] == predicted[1]))}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="run folder of `rmt train` (or one of its checkpoints)")
    parser.add_argument("--segments", default=None, help="lengths, e.g. 1,8,64 (default: the run's longest)")
    parser.add_argument("--samples", type=int, default=200, help="test samples per length")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--fast", default=json.dumps(FAST), help="the fast path's inference settings, as JSON")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    plain, cfg, meta = load(args.run_dir, args.device, PLAIN)
    fast, _, _ = load(args.run_dir, args.device, json.loads(args.fast))
    lengths = [int(n) for n in args.segments.split(",")] if args.segments else [int(meta["max_segments"])]
    rows = []
    for segments in lengths:
        rows.append(compare(plain, fast, segments, args.samples, args.batch_size, int(cfg.task.eval_seed)))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"run": str(args.run_dir), "plain": PLAIN, "fast": json.loads(args.fast),
                                        "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
