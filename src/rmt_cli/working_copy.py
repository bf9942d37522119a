"""A bf16 copy of the model that runs without autocast: whole training steps with `trainer.compute_dtype=bf16`,
the segments before a BPTT window with `trainer.prefix_dtype=bf16` (engine.RecurrentMemory.read_prefix).

The fp32 weights stay the model's (master weights: the optimizer updates them, checkpoints save them, validation
reads them). Before each step the copy takes their values; after the backward pass its bf16 gradients are handed to
them in fp32, so that clipping and the optimizer see the gradients they would otherwise see, at bf16 precision.
Under autocast every op of a small model (MiniLM: batches of 32 segments) pays a per-op host cost for its casts;
without autocast on bf16 weights it does not (bench part p: the segments before a BPTT window read 1.85× faster).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the engine keeps a WorkingCopy for its prefix
    from rmt_cli.engine import RecurrentMemory


class WorkingCopy:
    def __init__(self, model: RecurrentMemory, dtype: torch.dtype = torch.bfloat16):
        self.master = model
        self.copy = model.copy_without_caches().to(dtype)
        self.copy.prefix_dtype = None  # its own weights are already in the dtype the prefix would use

    def refreshed(self) -> RecurrentMemory:
        """The copy, holding the master weights' current values, in the master's train/eval mode, without gradients."""
        with torch.no_grad():
            for copied, own in zip(self.copy.parameters(), self.master.parameters(), strict=True):
                copied.copy_(own)
                copied.grad = None
        return self.copy.train(self.master.training)

    def pass_gradients(self) -> None:
        """The copy's gradients, in fp32, become the master weights' (added to any they hold)."""
        for copied, own in zip(self.copy.parameters(), self.master.parameters(), strict=True):
            if copied.grad is None:
                continue
            gradient = copied.grad.to(own.dtype)
            own.grad = gradient if own.grad is None else own.grad + gradient
            copied.grad = None
