"""Each trained seed of a protocol run tested again with noise from novels it was trained on, beside its test on the
held-out novels: a memory that fails on noise it has not seen scores far higher on its training novels; one that
fails on length scores the same. For a run made without `rmt reproduce run --noise-check`, which runs the same
test (reproduce.NoiseCheck) as part of the protocol.

    python results/paper/analysis/noise_gap.py OUT/detect --segments 32,512 \
        --backbone-path MINILM_BF16 --documents emma,prideprejudice

OUT is the folder of `rmt reproduce run` (its seedN/train checkpoints are needed, so run this where they are).
Each seed's rows go to seedN/extrapolate_training_noise/ (its output to extrapolate_training_noise.out); the
comparison is printed and written to noise_gap.json in the task folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rmt_cli.reproduce import NoiseCheck


def rows_by_length(path: Path) -> dict[int, float]:
    return {row["segments"]: row["accuracy"] for row in json.loads(path.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task_folder", type=Path, help="e.g. OUT/detect: seedN/train and seedN/extrapolate")
    parser.add_argument("--segments", default="32,512")
    parser.add_argument("--documents", default="emma,prideprejudice",
                        help="training novels to draw the test noise from (noise.eval_documents)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backbone-path", help="the local weights folder the runs were trained from, if any")
    args = parser.parse_args()

    seeds = sorted(path.parent.parent for path in args.task_folder.glob("seed*/train/config.yaml"))
    if not seeds:
        raise SystemExit(f"{args.task_folder} holds no seedN/train run folder")
    backbone = [f"backbone.name_or_path={args.backbone_path}"] if args.backbone_path else []
    segments = [int(n) for n in args.segments.split(",")]
    check = NoiseCheck(tuple(args.documents.split(",")), tuple(segments), args.samples)
    jobs = {seed: check.job(seed, backbone) for seed in seeds}  # side by side, as the protocol runs them
    while any(job.poll() is None for job in jobs.values()):
        time.sleep(5)
    for seed, job in jobs.items():
        if job.poll() != 0:
            raise SystemExit(f"the extrapolation of {seed.name} failed: {job.log}")

    report = {"training_documents": args.documents.split(","), "seeds": {}}
    print(f"accuracy %, held-out novels (the test) / training novels ({args.documents})")
    for seed in seeds:
        held_out = rows_by_length(seed / "extrapolate" / "extrapolation.json")
        training = rows_by_length(seed / NoiseCheck.name / "extrapolation.json")
        report["seeds"][seed.name] = {str(n): {"held_out": held_out.get(n), "training": training[n]}
                                      for n in sorted(training)}
        print(f"{seed.name}: " + ", ".join(
            f"{n} segments {'-' if held_out.get(n) is None else f'{100 * held_out[n]:.1f}'} / "
            f"{100 * training[n]:.1f}" for n in sorted(training)))
    (args.task_folder / "noise_gap.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
