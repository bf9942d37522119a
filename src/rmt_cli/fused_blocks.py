"""BERT-family encoder blocks with fewer kernels: `fused_blocks=true` of eval and extrapolate, and
`trainer.fused_blocks=true` of train.

transformers' BertLayer projects queries, keys and values with three matrix products and applies GELU as a kernel of
its own over the 4x-wide intermediate activations. A fused block computes the same function with one product of the
three projections' weights stacked and, for inference on CUDA, GELU in the epilogue of the intermediate product
(cuBLASLt, through `torch._addmm_activation`): one pass less over the widest activations of the block. cuBLASLt's
epilogue is GELU's tanh approximation (within 5e-4 of the exact function on the pre-activation); on CPU the same call
is the exact GELU, so CPU results equal the unfused block's to float rounding. Attention is SDPA without a mask, as
`rmt` runs encoders (unmasked_attention.py).

For inference the stacked weights are a snapshot taken when the blocks are fused (a buffer that checkpoints never
see), so fuse a model whose weights no longer change, as eval and extrapolate do once the checkpoint is loaded; a
block in training mode then runs transformers' own forward. For training (`live`) the weights are stacked at every
call from the parameters themselves, GELU is the exact one, and in training mode the block drops out where
transformers' does (attention probabilities, and each sublayer's output before its residual sum) with the same
probabilities: the same function in a few functional calls instead of a dozen modules, which is what a training step
bound by Python and kernel launches pays for. The price is paid in the segment loop: every segment stacks the
weights again and, under autocast, casts the stack to bf16 again, where transformers' three projections read
autocast's cached casts of their weights; bench part f says which side wins. The state dict keeps transformers' keys
either way.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rmt_cli.engine import transformer_blocks

EXACT_GELU = ("gelu",)  # config.hidden_act values whose function is the exact (erf) GELU


def fusable(block: Any) -> bool:
    """Whether `block` has BertLayer's shape: self-attention with query, key and value projections (and dropout),
    its output dense + dropout + LayerNorm, an intermediate dense and an output dense + dropout + LayerNorm, and no
    cross-attention."""
    attention = getattr(getattr(block, "attention", None), "self", None)
    needed = (getattr(attention, "query", None), getattr(attention, "key", None), getattr(attention, "value", None),
              getattr(getattr(block, "intermediate", None), "dense", None), getattr(block, "output", None))
    if not all(isinstance(module, nn.Module) for module in needed):
        return False
    biased = all(getattr(linear, "bias", None) is not None for linear in needed[:4])
    sublayers = (block.attention.output, block.output)
    return (biased and all(hasattr(sublayer, "LayerNorm") and hasattr(sublayer, "dropout") for sublayer in sublayers)
            and hasattr(attention, "dropout") and not getattr(block, "crossattention", None)
            and not getattr(attention, "is_causal", False))


def fusable_backbone(backbone: nn.Module) -> bool:
    """Whether every transformer block of `backbone` is BERT-shaped (not decoders, MPNet's relative attention, ...)."""
    return not getattr(backbone.config, "is_decoder", False) and all(map(fusable, transformer_blocks(backbone)))


def fuse_blocks(backbone: nn.Module, live: bool = False) -> bool:
    """Give every transformer block of `backbone` the fused forward: for inference (a snapshot of the stacked
    weights, GELU in the epilogue), or `live` for training (weights stacked at each call, exact GELU, dropout).
    False (and nothing changed) where the backbone is not `fusable_backbone`."""
    if not fusable_backbone(backbone):
        return False
    config = backbone.config
    blocks = transformer_blocks(backbone)
    block: Any  # a BertLayer: its submodules are reached by name
    for block in blocks:
        block.fused_live = live
        if not live:
            weight, bias = stacked_projection(block)
            block.register_buffer("fused_qkv_weight", weight.detach(), persistent=False)
            block.register_buffer("fused_qkv_bias", bias.detach(), persistent=False)
        block.gelu_epilogue = not live and getattr(config, "hidden_act", None) in EXACT_GELU
        block.unfused_forward = block.forward
        block.forward = types.MethodType(fused_forward, block)
    return True


def stacked_projection(block: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The query, key and value projections' weights and biases stacked: one [3 * width, width] product."""
    attention = block.attention.self
    stacked = (attention.query, attention.key, attention.value)
    return torch.cat([linear.weight for linear in stacked]), torch.cat([linear.bias for linear in stacked])


def gelu_dense(hidden: torch.Tensor, dense: nn.Linear) -> torch.Tensor:
    """GELU(dense(hidden)) in one matrix product with its bias and GELU as the epilogue (the tanh approximation
    on CUDA, the exact function on CPU)."""
    rows = hidden.reshape(-1, hidden.shape[-1])
    out = torch._addmm_activation(dense.bias, rows, dense.weight.t(), use_gelu=True)
    return out.view(*hidden.shape[:-1], out.shape[-1])


def fused_forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """BertLayer's forward with stacked query/key/value: in eval mode, or in training mode too when fused `live`
    (dropout as transformers applies it); transformers' own forward for an inference-fused block in training mode."""
    if self.training and not self.fused_live:
        return self.unfused_forward(hidden_states, *args, **kwargs)
    attention, training = self.attention.self, self.training
    batch, length, width = hidden_states.shape
    heads, head_size = attention.num_attention_heads, attention.attention_head_size
    weight, bias = stacked_projection(self) if self.fused_live else (self.fused_qkv_weight, self.fused_qkv_bias)
    qkv = F.linear(hidden_states, weight, bias)
    query, key, value = qkv.view(batch, length, 3, heads, head_size).permute(2, 0, 3, 1, 4).unbind(0)
    context = F.scaled_dot_product_attention(query, key, value, dropout_p=attention.dropout.p if training else 0.0,
                                             scale=head_size ** -0.5)
    context = context.transpose(1, 2).reshape(batch, length, width)
    out = self.attention.output
    attended = out.LayerNorm(F.dropout(out.dense(context), out.dropout.p, training) + hidden_states)
    dense = self.intermediate.dense
    wide = gelu_dense(attended, dense) if self.gelu_epilogue else self.intermediate.intermediate_act_fn(dense(attended))
    return self.output.LayerNorm(F.dropout(self.output.dense(wide), self.output.dropout.p, training) + attended)
