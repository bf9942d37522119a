"""Running a sample through the engine one segment at a time with the backbone on eager attention, keeping every
segment's attention map and the memory after it.

Each segment goes through `RecurrentMemory.forward`, as in every other command. The engine does not hand out
attention weights, so while a capture runs, hooks on the backbone ask each of its calls for them and keep them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from rmt_cli.attention.groups import position_groups
from rmt_cli.backbones import attention_implementation
from rmt_cli.errors import RuntimeFailure
from rmt_cli.samples import Sample, SampleFactory


def eager_attention(backbone):
    """Switch the backbone to eager attention (the only kind that returns its weights) and back."""
    return attention_implementation(backbone, "eager")


@contextmanager
def recorded_attentions(model):
    """While active, every backbone call of the engine `model` returns its attention weights, and they are appended
    to the yielded list: one tuple of per-layer [batch, heads, L, L] weights per segment read."""
    # The module RecurrentMemory.read_segment calls: the encoder itself, or a causal LM's base model.
    backbone = model.backbone if model.layout == "encoder" else model.backbone.base_model
    found = []

    def ask_for_weights(module, args, kwargs):
        return args, {**kwargs, "output_attentions": True}

    def keep_weights(module, args, output):
        found.append(output.attentions)

    hooks = [backbone.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
             backbone.register_forward_hook(keep_weights)]
    try:
        yield found
    finally:
        for hook in hooks:
            hook.remove()


@dataclass
class SampleCapture:
    maps: list[np.ndarray]  # [L, L] per segment (selected layer/head, or averaged)
    memories: list[np.ndarray]  # [m, hidden]: the initial memory, then the memory after each segment
    tokens: list[np.ndarray]  # content token ids per segment
    labels: list[list[str]] = field(default_factory=list)  # position groups per segment


def select_attention(attentions: Sequence[torch.Tensor], layer: int | None, head: int | None) -> np.ndarray:
    """[L, L] map of row 0 from per-layer [batch, heads, L, L] weights: one layer/head, or the mean over them."""
    stack = torch.stack([a[0].float() for a in attentions])  # [layers, heads, L, L]
    stack = stack[[layer]] if layer is not None else stack
    stack = stack[:, [head]] if head is not None else stack
    return stack.mean(dim=(0, 1)).cpu().numpy()


@torch.inference_mode()
def capture_sample(model, factory: SampleFactory, sample: Sample, layer: int | None = None,
                   head: int | None = None, autocast=nullcontext) -> SampleCapture:
    """Run one sample segment by segment through the engine (a RecurrentMemory), keeping attention maps and
    memory states. autocast: a context-manager factory, e.g. Experiment.autocast."""
    device = model.initial_memory.device
    was_training = model.training
    model.eval()
    memory = model.start_memory(1)
    capture = SampleCapture(maps=[], memories=[memory[0].float().cpu().numpy()], tokens=[])
    last = sample.n_segments - 1
    # The generate head (no head module: it is the LM head) reads answer tokens after the question; none here.
    answer = torch.zeros(1, 0, dtype=torch.long, device=device) if model.head is None else None
    try:
        with eager_attention(model.backbone), recorded_attentions(model) as attentions, autocast():
            for index in range(sample.n_segments):
                tokens = factory.segment(sample, index)
                batch = torch.from_numpy(np.asarray(tokens, dtype=np.int64))[None].to(device)
                memory = model([batch], memory=memory, answer=answer).memory
                weights = attentions.pop() if attentions else None  # only this segment's weights are kept
                if not weights:
                    raise RuntimeFailure("the backbone returned no attention weights even with eager attention; "
                                         "`rmt attention` needs a backbone that supports output_attentions")
                capture.maps.append(select_attention(weights, layer, head))
                capture.memories.append(memory[0].float().cpu().numpy())
                capture.tokens.append(np.asarray(tokens))
                facts = [f for f in sample.facts if f.segment == index]
                capture.labels.append(position_groups(model.memory_size, len(tokens), facts,
                                                      len(sample.question) if index == last else 0, model.layout))
    finally:
        model.train(was_training)
    return capture
