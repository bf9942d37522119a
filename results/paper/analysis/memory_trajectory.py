"""What the memory does over a long input, per trained seed: its scale segment by segment, how much each segment
changes it, and how much the segment holding the fact changes it, against where that fact comes and whether the
answer was right. Tells a memory whose scale drifts over thousands of segments from one that stops taking in facts.

    python results/paper/analysis/memory_trajectory.py OUT/detect --segments 4096 --samples 64 --out OUT/memory \
        [--backbone-path MINILM]   # a run trained with backbone.name_or_path=MINILM (a checkpoint cannot choose it)

Reads each `OUT/detect/seedN/train` run (its last stage's best checkpoint, as `rmt extrapolate` does) and its
fixed test samples (the first `--samples` of the set `rmt extrapolate` draws at that length), runs them segment by
segment on the run's device and writes `memory_trajectory.json` and `.png` into --out:
- `rms`: the memory's root mean square (over samples, slots and features) after segments 1, 2, 4, ... and the last;
- per sample: the fact's segment, the relative change the fact's segment made (‖m_f − m_f-1‖ / ‖m_f-1‖), the median
  change a noise segment makes after it, and whether the last segment's answer is right; with `memory.gated_writes`
  also the gate's mean share on the fact's segment and its median on the noise segments after it.
A CUDA device reads 4,096 segments × 64 samples of MiniLM in seconds; a CPU only short inputs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

import rmt_cli
from rmt_cli.backbones import load_tokenizer
from rmt_cli.batches import BatchPlan, step_tokens
from rmt_cli.corpus.load import load_noise
from rmt_cli.experiment import check_sizes, task_spec
from rmt_cli.inference import to_device
from rmt_cli.samples import SampleFactory
from rmt_cli.trained_run import typed_run_config


def test_factory(train_dir: Path) -> tuple[SampleFactory, int]:
    """The sample factory of the run's test sets, and the seed they are drawn with."""
    cfg = typed_run_config("train", OmegaConf.to_container(OmegaConf.load(train_dir / "config.yaml")))
    tokenizer = load_tokenizer(cfg.backbone)
    return SampleFactory(task_spec(cfg), load_noise(cfg.noise, tokenizer).eval, tokenizer, check_sizes(cfg)), \
        cfg.task.eval_seed


@torch.inference_mode()
def trace(model, factory: SampleFactory, samples: list) -> dict:
    """Run `samples` (all of one length) segment by segment and keep the memory's statistics."""
    device = model.initial_memory.device
    plan = BatchPlan.right_aligned(samples)
    memory = model.start_memory(len(samples)).float()
    rms, change, shares = [], [], []
    gate = model.write_gate
    hook = None if gate is None else gate.register_forward_hook(
        lambda module, inputs, output: shares.append(torch.sigmoid(output.float()).mean(dim=(1, 2))))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for step in range(plan.n_steps):
        tokens = to_device(step_tokens(factory, plan, step), device)
        with autocast:
            new_memory, readout, _ = model.read_segment(memory, tokens)
        new_memory = new_memory.float()
        rms.append(new_memory.pow(2).mean(dim=(1, 2)).sqrt())
        change.append((new_memory - memory).flatten(1).norm(dim=1) / memory.flatten(1).norm(dim=1))
        memory = new_memory
    if hook is not None:
        hook.remove()
    with autocast:
        predicted = model.answer_logits(readout).argmax(-1)
    share_rows = torch.stack(shares).cpu().numpy() if shares else None  # [steps, samples]
    rms_rows, change_rows = torch.stack(rms).cpu().numpy(), torch.stack(change).cpu().numpy()  # [steps, samples]
    ordered = plan.samples
    facts = np.array([min(s.fact_segments) for s in ordered])
    right = (predicted.cpu().numpy() == np.array([s.label for s in ordered]))
    marks = sorted({2 ** k for k in range(int(math.log2(plan.n_steps)) + 1)} | {plan.n_steps})
    rows = []
    for i, f in enumerate(facts):
        after = f + 1 < plan.n_steps
        row = {"fact_segment": int(f), "fact_change": float(change_rows[f, i]),
               "noise_change_after": float(np.median(change_rows[f + 1:, i])) if after else None,
               "right": bool(right[i])}
        if share_rows is not None:
            row |= {"fact_gate": float(share_rows[f, i]),
                    "noise_gate_after": float(np.median(share_rows[f + 1:, i])) if after else None}
        rows.append(row)
    return {"segments": plan.n_steps, "rms": {str(n): float(rms_rows[n - 1].mean()) for n in marks},
            "accuracy": float(right.mean()), "samples": rows}


def plot(traces: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (scale, writes) = plt.subplots(1, 2, figsize=(11, 4))
    for seed, found in traces.items():
        marks = [int(n) for n in found["rms"]]
        line, = scale.plot(marks, list(found["rms"].values()), marker="o", label=f"{seed} ({found['accuracy']:.0%})")
        for right, style in ((True, "o"), (False, "x")):
            chosen = [s for s in found["samples"] if s["right"] == right]
            writes.scatter([s["fact_segment"] + 1 for s in chosen], [s["fact_change"] for s in chosen],
                           marker=style, color=line.get_color(), alpha=0.6)
    scale.set(xscale="log", xlabel="segments read", ylabel="memory RMS", title="memory scale (mean over samples)")
    writes.set(xscale="log", xlabel="segment of the fact", ylabel="relative change of the memory",
               title="what the fact's segment writes (o right, x wrong)")
    scale.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task_folder", type=Path, help="OUT/TASK of `rmt reproduce run`: seedN/train run folders")
    parser.add_argument("--segments", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backbone-path", help="the runs' backbone.name_or_path, when they were trained with one")
    args = parser.parse_args()

    traces = {}
    for seed in sorted(args.task_folder.glob("seed*/train")):
        run = rmt_cli.load_run(seed, backbone=None if args.backbone_path is None else
                               {"name_or_path": args.backbone_path})
        factory, eval_seed = test_factory(seed)
        samples = factory.sample_set("test", eval_seed, args.segments, args.samples)
        traces[seed.parent.name] = found = trace(run.model, factory, samples)
        print(f"{seed.parent.name}: accuracy {found['accuracy']:.1%}, memory RMS "
              + ", ".join(f"{n}: {v:.3g}" for n, v in found["rms"].items()), flush=True)
        del run
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory_trajectory.json").write_text(json.dumps(traces, indent=1))
    plot(traces, args.out / "memory_trajectory.png")


if __name__ == "__main__":
    main()
