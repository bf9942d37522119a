"""Memory at every layer (`memory.every_layer`): an encoder carries m memory vectors per transformer block instead of
m in all.

Plain RMT reads its memory once, as the input embeddings at the memory positions, and writes the last layer's states
there. With memory at every layer, block k's input at the memory positions is replaced by what block k output there
in the segment before, and block k's output there is what the next segment's block k reads: a later segment's block
k attends to a state of the depth at which block k saw the earlier segment's tokens, rather than one that has been
through every block of the later segment. The memory is then [rows, layers × m, hidden], block k's vectors at
k × m .. (k + 1) × m - 1, so every caller that carries, truncates, graphs or checkpoints it sees one tensor as before.

The blocks are reached through hooks registered once (`attach`): a hook reads the vectors to inject from an attribute
of its own block, set for the duration of one backbone call (`run`), so a deep copy of the model (a working copy)
carries working hooks of its own. Blocks are typed Any: transformers' modules, whose extra attributes mypy cannot see.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor


def attach(blocks: Sequence[Any]) -> None:
    """Registers the injecting and recording hooks on every block (once, when the model is built)."""
    attach_hooks(blocks, ("rmt_layer_memory", "rmt_layer_written"), inject, record)


def attach_hooks(blocks: Sequence[Any], attributes: tuple[str, ...], before: Callable, after: Callable) -> None:
    """On every block: the attributes its hooks read and write (None between backbone calls), a forward pre-hook
    that may replace its hidden states (`before`, with keyword arguments) and a forward hook (`after`)."""
    for block in blocks:
        for name in attributes:
            setattr(block, name, None)
        block.register_forward_pre_hook(before, with_kwargs=True)
        block.register_forward_hook(after)


def block_input(args: tuple, kwargs: dict) -> Tensor:
    """A transformer block's hidden states, as its caller passed them (first positional argument or keyword)."""
    return args[0] if args else kwargs["hidden_states"]


def with_block_input(args: tuple, kwargs: dict, hidden: Tensor) -> tuple[tuple, dict]:
    """The block's arguments with `hidden` in place of its hidden states: what a forward pre-hook returns."""
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def inject(block: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Replaces the block's input at the memory positions (1 .. m, after [CLS]) by its own carried vectors."""
    memory = block.rmt_layer_memory
    if memory is None:
        return None
    hidden = block_input(args, kwargs)
    m = memory.shape[1]
    return with_block_input(args, kwargs, torch.cat([hidden[:, :1], memory.to(hidden.dtype), hidden[:, 1 + m:]], 1))


def record(block: Any, args: tuple, output: Any) -> None:
    """Keeps the block's output at the memory positions: what the next segment's same block reads."""
    memory = block.rmt_layer_memory
    if memory is not None:
        hidden = output[0] if isinstance(output, tuple) else output
        block.rmt_layer_written = hidden[:, 1:1 + memory.shape[1]]


def run(blocks: Sequence[Any], memory: Tensor, call: Callable[[], Any]) -> tuple[Any, Tensor]:
    """`call()` (one backbone forward) with each block reading its share of `memory` ([rows, len(blocks) × m,
    hidden]); returns its result and the written memory, of the same shape."""
    m = memory.shape[1] // len(blocks)
    for k, block in enumerate(blocks):
        block.rmt_layer_memory = memory[:, k * m:(k + 1) * m]
    try:
        result = call()
        written = torch.cat([block.rmt_layer_written for block in blocks], dim=1)
    finally:
        for block in blocks:
            block.rmt_layer_memory = block.rmt_layer_written = None
    return result, written
