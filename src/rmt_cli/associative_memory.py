"""Associative memory (`memory.associative`): beside the m memory vectors, every transformer block of an encoder keeps
a matrix that binds keys to values, as the associative-memory variants of RMT do.

Block k holds A_k [d, hidden] and a normaliser z_k [d] (d = hidden). Reading, at the block's input, every position x
gets x + s_k · φ(Q_k x) A_k / (φ(Q_k x) · z_k), φ(u) = elu(u) + 1 > 0, s_k a learned scale that starts at 0 (the
pretrained blocks see no change until training moves it). Writing, from the block's output at the m memory positions
(each row y): key φ(K_k y), value V_k y, strength β = sigmoid(B_k y); the delta rule replaces what A_k returned for
that key by the new value, A_k += Σ β φ(K y)ᵀ (V y - φ(K y) A_k / (φ(K y) · z_k)), and z_k counts each key's new
share, z_k += Σ max(0, 1 - φ(K y) · z_k / |φ(K y)|²) φ(K y). A segment reads the state the segments before it
wrote; the relation a segment states can come back whole for the query that matches its key, where the m memory
vectors hold a mixture.

The state is carried inside the engine's memory tensor, after the m memory vectors: per block hidden + 1 rows of
hidden (A_k, then z_k), in fp32, starting at zero. The blocks are reached through hooks registered once (`attach`),
which read their block's parameters and state from attributes set for one backbone call (`run`), as layer_memory.py
does.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rmt_cli.layer_memory import attach_hooks, block_input, with_block_input

EPSILON = 1e-6


class AssociativeLayer(nn.Module):
    """One block's projections: queries, keys, values, write strength, and the read's scale."""

    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden, bias=False)
        self.strength = nn.Linear(hidden, 1)
        self.read_scale = nn.Parameter(torch.zeros(()))


def state_rows(hidden: int, blocks: int) -> int:
    """Rows of the memory tensor that the associative state takes: A_k and z_k for every block."""
    return blocks * (hidden + 1)


def features(x: Tensor) -> Tensor:
    return F.elu(x) + 1


def lookup(keys: Tensor, matrix: Tensor, normaliser: Tensor) -> Tensor:
    """What the memory returns for these (feature-mapped) keys [rows, n, d]: keys A / (keys · z)."""
    return keys @ matrix / (keys @ normaliser.unsqueeze(-1) + EPSILON)


def projected(projection: nn.Linear, hidden: Tensor) -> Tensor:
    """A projection in its weights' dtype (fp32 master weights, or a bf16 copy's), returned in fp32."""
    return projection(hidden.to(projection.weight.dtype)).float()


def read(layer: AssociativeLayer, matrix: Tensor, normaliser: Tensor, hidden: Tensor) -> Tensor:
    with torch.autocast(hidden.device.type, enabled=False):  # the state's arithmetic in fp32
        retrieved = lookup(features(projected(layer.query, hidden)), matrix, normaliser)
        return (hidden.float() + layer.read_scale.float() * retrieved).to(hidden.dtype)


def write(layer: AssociativeLayer, matrix: Tensor, normaliser: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
    """The state after the delta rule's update from the memory positions' states `slots` [rows, m, hidden]."""
    with torch.autocast(slots.device.type, enabled=False):
        keys, values = features(projected(layer.key, slots)), projected(layer.value, slots)
        strength = torch.sigmoid(projected(layer.strength, slots))
        matrix = matrix + (strength * keys).transpose(1, 2) @ (values - lookup(keys, matrix, normaliser))
        known = keys @ normaliser.unsqueeze(-1) / keys.pow(2).sum(-1, keepdim=True)
        normaliser = normaliser + ((1 - known).clamp(min=0) * keys).sum(1)
    return matrix, normaliser


def attach(blocks: Sequence[Any]) -> None:
    """Registers the reading and writing hooks on every block (once, when the model is built)."""
    attach_hooks(blocks, ("rmt_associative", "rmt_associative_written"), read_hook, write_hook)


def read_hook(block: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    if block.rmt_associative is None:
        return None
    layer, matrix, normaliser, _ = block.rmt_associative
    return with_block_input(args, kwargs, read(layer, matrix, normaliser, block_input(args, kwargs)))


def write_hook(block: Any, args: tuple, output: Any) -> None:
    if block.rmt_associative is not None:
        layer, matrix, normaliser, m = block.rmt_associative
        hidden = output[0] if isinstance(output, tuple) else output
        block.rmt_associative_written = write(layer, matrix, normaliser, hidden[:, 1:1 + m])


def run(blocks: Sequence[Any], layers: nn.ModuleList, state: Tensor, memory_size: int,
        call: Callable[[], Any]) -> tuple[Any, Tensor]:
    """`call()` (one backbone forward) with every block reading and updating its part of `state` ([rows,
    state_rows, hidden]); returns its result and the new state, of the same shape, in fp32."""
    hidden = state.shape[-1]
    per_block = hidden + 1
    for k, (block, layer) in enumerate(zip(blocks, layers, strict=True)):
        part = state[:, k * per_block:(k + 1) * per_block].float()
        block.rmt_associative = (layer, part[:, :hidden], part[:, hidden], memory_size)
    try:
        result = call()
        new = [torch.cat([matrix, normaliser.unsqueeze(1)], dim=1)
               for matrix, normaliser in (block.rmt_associative_written for block in blocks)]
    finally:
        for block in blocks:
            block.rmt_associative = block.rmt_associative_written = None
    return result, torch.cat(new, dim=1)
