"""memory.associative: a key-value matrix per transformer block beside the memory vectors (associative_memory.py)."""

import pytest
import torch

from conftest import tiny_bert
from rmt_cli import associative_memory as am
from rmt_cli.engine import RecurrentMemory, transformer_blocks


def associative(tokenizer, layers=2, memory_size=3, dropout=0.0, seed=0, read_scale=0.0):
    torch.manual_seed(seed)
    model = RecurrentMemory(tiny_bert(layers=layers, dropout=dropout), memory_size=memory_size, num_labels=6,
                            cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, dropout=0.0,
                            associative=True)
    with torch.no_grad():
        for layer in model.associative:
            layer.read_scale.fill_(read_scale)
    return model


def steps(batch=2, n=3, content=10, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1000, 30000, (batch, content), generator=generator) for _ in range(n)]


def strong_writer(hidden=8):
    """A layer whose writes have strength 1 and whose keys and values are the memory positions' states."""
    layer = am.AssociativeLayer(hidden)
    with torch.no_grad():
        layer.key.weight.copy_(torch.eye(hidden))
        layer.value.weight.copy_(torch.eye(hidden))
        layer.query.weight.copy_(torch.eye(hidden))
        layer.strength.weight.zero_()
        layer.strength.bias.fill_(40.0)
    return layer


def test_a_written_value_comes_back_for_its_key_and_a_new_value_replaces_it():
    """One key, strength 1: after a write the lookup returns its value exactly; a second write of the same key
    replaces the value (the delta rule) and adds nothing to the normaliser."""
    layer, hidden = strong_writer(), 8
    key = torch.randn(1, 1, hidden)
    with torch.no_grad():
        matrix, normaliser = am.write(layer, torch.zeros(1, hidden, hidden), torch.zeros(1, hidden), key)
        torch.testing.assert_close(am.lookup(am.features(key), matrix, normaliser), key)  # value = key here
        layer.value.weight.copy_(2 * torch.eye(hidden))  # the same key, now with another value
        again, normaliser_again = am.write(layer, matrix, normaliser, key)
        torch.testing.assert_close(am.lookup(am.features(key), again, normaliser_again), 2 * key)
        torch.testing.assert_close(normaliser_again, normaliser)


def test_two_keys_keep_their_own_values():
    layer, hidden = strong_writer(16), 16
    with torch.no_grad():
        keys = torch.zeros(1, 2, hidden)
        keys[0, 0, :8], keys[0, 1, 8:] = 3.0, 3.0  # elu(3) + 1 = 4 on one half, elu(0) + 1 = 1 on the other
        matrix, normaliser = am.write(layer, torch.zeros(1, hidden, hidden), torch.zeros(1, hidden), keys)
        got = am.lookup(am.features(keys), matrix, normaliser)
    # not exact (the feature maps overlap), but each key's value is the nearer one
    distance = torch.cdist(got[0], keys[0])
    assert distance[0, 0] < distance[0, 1] and distance[1, 1] < distance[1, 0]


def test_with_its_read_scale_at_zero_the_model_is_plain_rmt_and_its_state_fills(tokenizer):
    model = associative(tokenizer).eval()
    plain = RecurrentMemory(model.backbone, memory_size=3, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, dropout=0.0).eval()
    with torch.no_grad():
        plain.initial_memory.copy_(model.initial_memory)
        plain.head.load_state_dict(model.head.state_dict())
        out, reference = model(steps()), plain(steps())
    torch.testing.assert_close(out.logits, reference.logits)
    torch.testing.assert_close(out.memory[:, :3], reference.memory.float())
    rows = am.state_rows(32, 2)
    assert out.memory.shape == (2, 3 + rows, 32) and out.memory[:, 3:].abs().sum() > 0


def test_the_state_carries_information_and_every_projection_learns(tokenizer):
    model = associative(tokenizer, read_scale=1.0)
    batch = steps()
    changed = [batch[0].clone(), *batch[1:]]
    changed[0][:, :5] += 7
    with torch.no_grad():
        start = model.start_memory(2)
        first = model(batch[:1], memory=start).memory
        other = model(changed[:1], memory=start).memory
        assert not torch.allclose(first[:, 3:], other[:, 3:])  # the state after the first segment differs
        kept = first.clone()
        kept[:, :3] = other[:, :3]  # same memory vectors, different associative state
        assert not torch.allclose(model(batch[1:], memory=kept).logits, model(batch[1:], memory=other).logits)
    model.train()
    model(batch).logits.sum().backward()
    for name, parameter in model.associative.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_a_working_copy_and_the_static_step_agree(tokenizer):
    # checkpointed segments: tests/test_fast_paths.py::test_reentrant_checkpoints_give_the_plain_paths_gradients
    model = associative(tokenizer, dropout=0.1, read_scale=0.5).eval()
    batch = steps(n=3)
    with torch.no_grad():
        torch.testing.assert_close(model.copy_without_caches()(batch).memory, model(batch).memory)
    model.graph_devices = ("cpu",)  # the captured step's path, run eagerly on CPU
    with torch.inference_mode():
        torch.testing.assert_close(model(batch, cuda_graphs=True).memory, model(batch).memory)
    assert all(block.rmt_associative is None for block in transformer_blocks(model.backbone))


def test_a_decoder_or_both_memory_kinds_or_compiled_blocks_are_refused(tokenizer):
    from conftest import decoder_engine

    with pytest.raises(ValueError, match="encoder layout"):
        RecurrentMemory(decoder_engine("tiny-llama").backbone, memory_size=3, num_labels=6, layout="decoder",
                        associative=True)
    with pytest.raises(ValueError, match="pick one"):
        RecurrentMemory(tiny_bert(), memory_size=3, num_labels=6, cls_id=tokenizer.cls_token_id,
                        sep_id=tokenizer.sep_token_id, associative=True, every_layer=True)
    with pytest.raises(ValueError, match="not compiled"):
        associative(tokenizer).compile_blocks()


def test_bf16_weights_and_a_bf16_working_copy_run_with_the_state_in_fp32(tokenizer):
    from rmt_cli.working_copy import WorkingCopy

    model = associative(tokenizer, read_scale=0.5).eval()
    batch = steps()
    with torch.no_grad():
        reference = model(batch)
        copy = WorkingCopy(model).refreshed()  # what trainer.compute_dtype=bf16 and prefix_dtype=bf16 run on
        out = copy(batch, memory=model.start_memory(2).to(torch.bfloat16))
    assert out.memory.dtype == torch.float32  # the memory vectors and the state as the engine carries them
    torch.testing.assert_close(out.logits, reference.logits, rtol=0.1, atol=0.1)
