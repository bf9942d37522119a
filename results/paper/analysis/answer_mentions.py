"""How often the noise names each answer in a detect training input of a stage, beside a test input of each length:
a memory trained on 16-64-segment inputs meets far fewer mentions of one place per input than a test of thousands of
segments gives it. Draws the samples as `rmt train` and `rmt extrapolate` draw them, from a run's saved config.

    python results/paper/analysis/answer_mentions.py results/paper/detect/seed0/train_config.yaml \
        --train-segments 16,64 --confuser-share 0.25 [--confuser-answers even] --test-segments 128,512,4096 \
        --backbone-path MINILM

Prints, per answer, the mean and the largest count of its mentions per input (every answer's spellings counted in
every noise window, as predictions.csv's noise_mentions_* columns count them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf

from rmt_cli.backbones import load_tokenizer
from rmt_cli.corpus import load_noise
from rmt_cli.experiment import check_sizes, task_spec
from rmt_cli.predictions import MentionCounter
from rmt_cli.samples import SampleFactory, TrainingMix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a run's train_config.yaml (or config.yaml)")
    parser.add_argument("--train-segments", default="16,64", help="the stage's lengths: lo,hi drawn per sample")
    parser.add_argument("--confuser-share", type=float, default=0.25)
    parser.add_argument("--confuser-answers", default="natural", choices=("natural", "even"))
    parser.add_argument("--test-segments", default="128,512,4096")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backbone-path", help="the local weights folder, if the config names another machine's")
    parser.add_argument("--noise-path", help="the Austen folder (default: this machine's, `make corpus`); the path a "
                        "saved config names is another machine's")
    args = parser.parse_args()

    cfg = OmegaConf.create(yaml.safe_load(Path(args.config).read_text()))
    if args.backbone_path:
        cfg.backbone.name_or_path = args.backbone_path
    cfg.noise.path = args.noise_path
    tokenizer = load_tokenizer(cfg.backbone)
    noise = load_noise(cfg.noise, tokenizer)
    task, content = task_spec(cfg), check_sizes(cfg)
    labels = list(task.labels)

    def report(name: str, factory: SampleFactory, samples: list) -> None:
        count = MentionCounter(factory)
        counts = np.array([count(sample) for sample in samples])  # [samples, labels]
        cells = ", ".join(f"{label} {counts[:, i].mean():.1f} (max {counts[:, i].max()})"
                          for i, label in enumerate(labels))
        print(f"{name}: {cells}")

    train = SampleFactory(task, noise.train, tokenizer, content)
    lo, hi = map(int, args.train_segments.split(","))
    rng = np.random.default_rng(0)
    mix = TrainingMix(confuser_share=args.confuser_share, confuser_answers=args.confuser_answers)
    drawn = [train.draw(rng, int(rng.integers(lo, hi + 1)), mix=mix) for _ in range(args.samples)]
    report(f"training, {lo}-{hi} segments, confuser_share {args.confuser_share} ({args.confuser_answers})", train,
           drawn)
    test = SampleFactory(task, noise.eval, tokenizer, content)
    for n in map(int, args.test_segments.split(",")):
        report(f"test, {n} segments", test, test.sample_set("test", cfg.task.eval_seed, n, args.samples))


if __name__ == "__main__":
    main()
