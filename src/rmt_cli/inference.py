"""Inference over fixed sample sets: batches of samples streamed through the recurrent engine segment by segment,
and the answers they get.

Used by every command that measures a model (`rmt eval`, `rmt extrapolate`, `rmt attention`) and by validation
during `rmt train`.
"""

from __future__ import annotations

import numpy as np
import torch

from rmt_cli.batches import BatchPlan, step_tokens
from rmt_cli.samples import SampleFactory


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


def correct(predictions: np.ndarray, samples: list) -> np.ndarray:
    """Per sample, whether its prediction is its label."""
    return predictions == np.array([s.label for s in samples])


def correct_answers(predictions: np.ndarray, samples: list) -> int:
    return int(np.sum(correct(predictions, samples)))


def accuracy(experiment, factory: SampleFactory, samples: list, batch_size: int, cuda_graphs: bool = False) -> float:
    return correct_answers(predict(experiment, factory, samples, batch_size, cuda_graphs), samples) / len(samples)
