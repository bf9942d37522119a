"""BERT-family encoder blocks with fewer kernels, for inference (`fused_blocks=true` of eval and extrapolate).

transformers' BertLayer projects queries, keys and values with three matrix products and applies GELU as a kernel of
its own over the 4x-wide intermediate activations. A fused block computes the same function with one product of the
three projections' weights stacked (made once, kept as a buffer that checkpoints never see) and, on CUDA, GELU in the
epilogue of the intermediate product (cuBLASLt, through `torch._addmm_activation`): one pass less over the widest
activations of the block. cuBLASLt's epilogue is GELU's tanh approximation (within 5e-4 of the exact function
on the pre-activation); on CPU the same call is the exact GELU, so CPU results equal the unfused block's to float
rounding. Attention is SDPA without a mask, as `rmt` runs encoders (unmasked_attention.py).

Only eval mode is fused: a block in training mode runs transformers' own forward (dropout and all). The stacked
weights are a snapshot taken when the blocks are fused, so fuse a model whose weights no longer change, as eval and
extrapolate do once the checkpoint is loaded. The state dict keeps transformers' keys.
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
    """Whether `block` has BertLayer's shape: self-attention with query, key and value projections, its output
    dense + LayerNorm, an intermediate dense and an output dense + LayerNorm, and no cross-attention."""
    attention = getattr(getattr(block, "attention", None), "self", None)
    needed = (getattr(attention, "query", None), getattr(attention, "key", None), getattr(attention, "value", None),
              getattr(getattr(block, "intermediate", None), "dense", None), getattr(block, "output", None))
    if not all(isinstance(module, nn.Module) for module in needed):
        return False
    biased = all(getattr(linear, "bias", None) is not None for linear in needed[:4])
    return (biased and hasattr(block.attention.output, "LayerNorm") and hasattr(block.output, "LayerNorm")
            and not getattr(block, "crossattention", None) and not getattr(attention, "is_causal", False))


def fuse_blocks(backbone: nn.Module) -> bool:
    """Give every transformer block of `backbone` the fused forward; False (and nothing changed) where some block
    is not BERT-shaped (decoders, MPNet's relative attention, ...)."""
    config = backbone.config
    blocks = transformer_blocks(backbone)
    if getattr(config, "is_decoder", False) or not all(fusable(block) for block in blocks):
        return False
    block: Any  # a BertLayer: its submodules are reached by name
    for block in blocks:
        attention = block.attention.self
        stacked = (attention.query, attention.key, attention.value)
        block.register_buffer("fused_qkv_weight", torch.cat([linear.weight.detach() for linear in stacked]),
                              persistent=False)
        block.register_buffer("fused_qkv_bias", torch.cat([linear.bias.detach() for linear in stacked]),
                              persistent=False)
        block.gelu_epilogue = getattr(config, "hidden_act", None) in EXACT_GELU
        block.unfused_forward = block.forward
        block.forward = types.MethodType(fused_forward, block)
    return True


def gelu_dense(hidden: torch.Tensor, dense: nn.Linear) -> torch.Tensor:
    """GELU(dense(hidden)) in one matrix product with its bias and GELU as the epilogue (the tanh approximation
    on CUDA, the exact function on CPU)."""
    rows = hidden.reshape(-1, hidden.shape[-1])
    out = torch._addmm_activation(dense.bias, rows, dense.weight.t(), use_gelu=True)
    return out.view(*hidden.shape[:-1], out.shape[-1])


def fused_forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """BertLayer's forward in eval mode with stacked query/key/value and GELU in the epilogue; transformers' own in
    training mode."""
    if self.training:
        return self.unfused_forward(hidden_states, *args, **kwargs)
    attention = self.attention.self
    batch, length, width = hidden_states.shape
    heads, head_size = attention.num_attention_heads, attention.attention_head_size
    qkv = F.linear(hidden_states, self.fused_qkv_weight, self.fused_qkv_bias)
    query, key, value = qkv.view(batch, length, 3, heads, head_size).permute(2, 0, 3, 1, 4).unbind(0)
    context = F.scaled_dot_product_attention(query, key, value, scale=head_size ** -0.5)
    context = context.transpose(1, 2).reshape(batch, length, width)
    attended = self.attention.output.LayerNorm(self.attention.output.dense(context) + hidden_states)
    dense = self.intermediate.dense
    wide = gelu_dense(attended, dense) if self.gelu_epilogue else self.intermediate.intermediate_act_fn(dense(attended))
    return self.output.LayerNorm(self.output.dense(wide) + attended)
