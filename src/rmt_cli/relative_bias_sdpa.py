"""MPNet's attention through SDPA, its relative position bias passed as SDPA's additive mask.

transformers runs MPNet (all-mpnet-base-v2, `backbone=mpnet-base`) on eager attention only: every layer adds the
encoder's relative position bias to its scores, which transformers' SDPA path has no place for. Eager attention
writes each layer's scores, their softmax and its dropout mask to memory (batch x heads x positions^2 each), and the
encoder expands the bias to the batch before the first layer. SDPA takes an additive float mask, so the same
attention runs in its fused kernels (on CUDA the memory-efficient one, which also returns the bias's gradient: the
bias table trains as before), and the bias stays one copy for the whole batch.

`backbone.relative_bias_sdpa: false` keeps transformers' eager attention. A layer asked for its attention weights
(`rmt attention`) computes them as transformers does.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F


def attend_relative_bias_with_sdpa(model: Any) -> bool:
    """Switch every MPNet attention layer of `model` to SDPA and keep the encoder's bias unexpanded. Returns
    whether the model has MPNet layers (whether anything was switched)."""
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder, MPNetSelfAttention

    switched = False
    for module in model.modules():
        # Instance attributes over the class's methods: a deep copy of the model (fast paths) rebinds them to its own
        # modules, and transformers' code is left as it is for every other model.
        if isinstance(module, MPNetSelfAttention) and not hasattr(module, "eager_forward"):
            module.eager_forward = module.forward  # type: ignore[assignment]
            module.forward = types.MethodType(sdpa_forward, module)  # type: ignore[method-assign]
            switched = True
        elif isinstance(module, MPNetEncoder) and not hasattr(module, "expanded_position_bias"):
            module.expanded_position_bias = module.compute_position_bias  # type: ignore[assignment]
            module.compute_position_bias = types.MethodType(  # type: ignore[method-assign]
                batch_shared_position_bias, module)
    return switched


def batch_shared_position_bias(encoder, hidden_states: torch.Tensor, position_ids=None, num_buckets: int = 32):
    """The encoder's bias (1, heads, positions, positions), broadcast over the batch where transformers copies it
    for every sample; with position ids (per sample) as transformers computes it."""
    if position_ids is not None:
        return encoder.expanded_position_bias(hidden_states, position_ids, num_buckets)
    return encoder.expanded_position_bias(hidden_states[:1], None, num_buckets)


def sdpa_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
    """MPNetSelfAttention.forward on SDPA: softmax(q k^T / sqrt(d) + bias + mask) v, as the eager forward."""
    if output_attentions:
        return self.eager_forward(hidden_states, attention_mask, position_bias, output_attentions, **kwargs)
    shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    query, key, value = (linear(hidden_states).view(shape).transpose(1, 2) for linear in (self.q, self.k, self.v))
    bias = additive_mask(position_bias, attention_mask, query.dtype)
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=bias,
                                             dropout_p=self.dropout.p if self.training else 0.0)
    context = context.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size)
    return (self.o(context),)


def additive_mask(position_bias, attention_mask, dtype: torch.dtype):
    """The bias plus transformers' mask (additive floats, or booleans where True attends), in the queries' dtype."""
    bias = position_bias
    if attention_mask is not None:
        mask = attention_mask
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))
        bias = mask if bias is None else bias + mask
    return None if bias is None else bias.to(dtype)
