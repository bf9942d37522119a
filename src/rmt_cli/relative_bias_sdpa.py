"""MPNet's attention through SDPA, its relative position bias passed as SDPA's additive mask.

transformers runs MPNet (all-mpnet-base-v2, `backbone=mpnet-base`) on eager attention only: every layer adds the
encoder's relative position bias to its scores, which transformers' SDPA path has no place for. Eager attention
writes each layer's scores, their softmax and its dropout mask to memory (batch x heads x positions^2 each), and the
encoder expands the bias to the batch before the first layer. SDPA takes an additive float mask, so the same
attention runs in its fused kernels (on CUDA the memory-efficient one, which also returns the bias's gradient: the
bias table trains as before), and the bias stays one copy for the whole batch.

An unpadded batch gets no padding mask (see `forward_without_padding_mask`), also while a CUDA graph is captured
(`rmt extrapolate`'s segment steps), where transformers would build one of zeros for the whole batch: what
unmasked_attention.py does for the backbones on transformers' own SDPA.

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
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder, MPNetModel, MPNetSelfAttention

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
        elif isinstance(module, MPNetModel) and not hasattr(module, "masking_forward"):
            module.masking_forward = module.forward  # type: ignore[assignment]
            module.forward = types.MethodType(forward_without_padding_mask, module)  # type: ignore[method-assign]
    return switched


def forward_without_padding_mask(model, input_ids=None, attention_mask=None, *args, **kwargs):
    """MPNetModel.forward, given an all-zero mask of shape (1, 1, 1, 1) where no padding mask is given.

    transformers makes no mask for an unpadded batch, except while a CUDA graph is captured: it cannot look at the
    padding's values then, so it builds a (batch, 1, positions, positions) mask of zeros, which every layer would add
    to the bias (a batch-sized bias again), and transformers 5.17 builds it with a host-to-device copy that capture
    forbids (`rmt extrapolate` failed on MPNet). A 4D mask is passed to the layers as it is."""
    if attention_mask is None:
        attention_mask = torch.zeros((1, 1, 1, 1), device=model.embeddings.word_embeddings.weight.device)
    return model.masking_forward(input_ids, attention_mask, *args, **kwargs)


def batch_shared_position_bias(encoder, hidden_states: torch.Tensor, position_ids=None, num_buckets: int = 32):
    """The encoder's bias (1, heads, positions, positions), broadcast over the batch where transformers copies it
    for every sample; with position ids (per sample) as transformers computes it. The relative positions are made
    on the bias's device: transformers 5.17 made them on the CPU and copied them over, which CUDA graph capture
    forbids."""
    if position_ids is not None:
        return encoder.expanded_position_bias(hidden_states, position_ids, num_buckets)
    positions = torch.arange(hidden_states.shape[1], device=hidden_states.device)
    buckets = encoder.relative_position_bucket(positions[None, :] - positions[:, None], num_buckets=num_buckets)
    # contiguous: the lookup's (positions, positions, heads) layout, permuted, would send SDPA to its math kernel
    return encoder.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0).contiguous()


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
