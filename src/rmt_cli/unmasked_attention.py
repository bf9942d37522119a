"""SDPA attention without transformers' mask builder, for backbones that `rmt` never masks.

The engine feeds a backbone whole segments and no padding mask: an encoder attends everywhere, a decoder causally
over its whole input. transformers still runs its mask builder on every call, and while a CUDA graph is being
captured the builder of transformers 5.0 to 5.17 at least cannot tell that the mask would be all true, so it
materialises one: SDPA then cannot take its flash kernel, and a replayed segment step grew with the batch (MiniLM
on an H200, transformers 5.17: 28 ms per segment at batch 64 where the same step run eagerly took 5.6 ms).

transformers builds no mask for an attention implementation that has no mask function registered. The two
implementations here are its SDPA function under their own names, each passing SDPA the causality of its layout,
so that nothing depends on a module's own `is_causal`. `backbone.skip_attention_masks: false` keeps transformers'
path.
"""

from __future__ import annotations

from typing import Any

# Both names contain "sdpa": transformers checks that a model supports them as it checks SDPA.
IMPLEMENTATIONS = {"encoder": "sdpa_rmt_bidirectional", "decoder": "sdpa_rmt_causal"}


def attention_function(causal: bool):
    """transformers' SDPA attention with no mask and a fixed causality."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attend(module, query, key, value, attention_mask, **kwargs):
        return sdpa_attention_forward(module, query, key, value, None, **{**kwargs, "is_causal": causal})

    return attend


def local_attention(config) -> bool:
    """Whether some layer attends to a window only (sliding or chunked attention): a mask is needed there."""
    layer_types = getattr(config, "layer_types", None) or ()
    sliding = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
    return bool(sliding or getattr(config, "attention_chunk_size", None)
                or any(kind != "full_attention" for kind in layer_types))


def skip_attention_masks(model: Any, layout: str) -> bool:
    """Switch `model` from transformers' SDPA to the mask-free SDPA of `layout` where both compute the same
    attention: SDPA chosen, the model dispatching through transformers' attention interface, no local attention.
    Returns whether it switched."""
    from transformers import AttentionInterface

    config = model.config
    dispatches = getattr(model, "_can_set_attn_implementation", lambda: False)()  # transformers 5's own check
    if getattr(config, "_attn_implementation", None) != "sdpa" or not dispatches or local_attention(config):
        return False
    name = IMPLEMENTATIONS[layout]
    AttentionInterface.register(name, attention_function(causal=layout == "decoder"))  # again: the same function
    model.set_attn_implementation(name)
    return True
