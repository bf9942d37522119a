"""Gradients of the first training step of `experiment=smoke`, written by rank 0 to the file named by argv[1].

Run alone (one process reads the whole global batch) or under torchrun (each rank reads its slice and DDP averages
the gradients). Dropout is off (eval mode) so both compute the same function.
"""

import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from rmt_cli import config_dir, distributed
from rmt_cli.experiment import build_experiment
from rmt_cli.curriculum import curriculum_stages
from rmt_cli.train import Trainer


def main(out: Path) -> None:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "trainer.device=cpu", "trainer.batch_size=8"])
    ranks = distributed.environment()
    distributed.join(ranks)
    experiment = build_experiment(cfg, "cpu", with_training_data=True)
    stages = curriculum_stages(cfg)
    trainer = Trainer(cfg, experiment, stages, out.parent, ranks)
    trainer.model.eval()
    loss, tokens = trainer.accumulate_gradients(stages[1], 1)  # stage 2: two segments, mixed batch
    if ranks.writer:
        grads = {name: p.grad.detach().clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
        torch.save({"loss": loss, "tokens": tokens, "next_sample": trainer.state.next_sample, "grads": grads}, out)
    distributed.leave()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
