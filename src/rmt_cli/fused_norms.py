"""RMSNorm layers of Llama-family decoders in fused kernels (`trainer.fused_norms=true`).

transformers' LlamaRMSNorm upcasts its input, squares it, averages, adds epsilon, takes the reciprocal square root,
multiplies, casts back and multiplies by its weight: several kernels forward and more backward, each a pass over the
residual stream (the decoder profile in docs/performance.md: fp32 products are its largest device time).
`torch.nn.functional.rms_norm` computes the same function in one kernel forward and one backward on CUDA. Where the
input's dtype is the weight's (the fp32 residual stream of fp32 weights under autocast, or the bf16 working copy),
the weight's product is fused too; otherwise the layer keeps transformers' order (normalise in fp32, cast to the
input's dtype, then multiply by the weight) so that outputs match to rounding. Parameters and state dict unchanged.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

# RMSNorm classes whose forward is weight * normalise(x) (Gemma's is (1 + weight) * ...: not fused here).
FUSABLE_NORMS = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")


def fuse_rms_norms(backbone: nn.Module) -> int:
    """Give every fusable RMSNorm of `backbone` the fused forward; returns how many (0: none, nothing changed)."""
    norms = [module for module in backbone.modules()
             if type(module).__name__ in FUSABLE_NORMS and hasattr(module, "variance_epsilon")]
    for norm in norms:
        norm.forward = types.MethodType(fused_rms_norm_forward, norm)
    return len(norms)


def fused_rms_norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    shape = (hidden_states.shape[-1],)
    if hidden_states.dtype == self.weight.dtype:
        return F.rms_norm(hidden_states, shape, self.weight, self.variance_epsilon)
    normed = F.rms_norm(hidden_states.float(), shape, eps=self.variance_epsilon)
    return self.weight * normed.to(hidden_states.dtype)
