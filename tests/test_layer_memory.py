"""memory.every_layer: an encoder carrying m memory vectors per transformer block (src/rmt_cli/layer_memory.py)."""

import pytest
import torch

from conftest import tiny_bert
from rmt_cli.engine import RecurrentMemory, transformer_blocks


def layered(tokenizer, layers=2, memory_size=3, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return RecurrentMemory(tiny_bert(layers=layers, dropout=dropout), memory_size=memory_size, num_labels=6,
                           cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, dropout=0.0,
                           every_layer=True)


def steps(batch=2, n=3, content=10, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1000, 30000, (batch, content), generator=generator) for _ in range(n)]


def test_each_block_reads_its_share_of_the_memory_and_writes_its_output_there(tokenizer):
    model = layered(tokenizer, layers=3).eval()
    m, blocks = model.memory_size, transformer_blocks(model.backbone)
    assert model.initial_memory.shape == (3 * m, 32)
    memory = torch.randn(2, 3 * m, 32)
    inputs, outputs = [], []
    for block in blocks:  # registered after rmt's own hooks: they see the block's input as rmt changed it
        block.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
        block.register_forward_hook(lambda mod, args, out: outputs.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        new, readout, out = model.read_segment(memory, steps(n=1)[0])
    for k in range(3):
        torch.testing.assert_close(inputs[k][:, 1:1 + m], memory[:, k * m:(k + 1) * m])
        torch.testing.assert_close(new[:, k * m:(k + 1) * m], outputs[k][:, 1:1 + m])
    torch.testing.assert_close(readout, out.last_hidden_state[:, 0])
    assert all(block.rmt_layer_memory is None and block.rmt_layer_written is None for block in blocks)


def test_every_block_of_the_memory_carries_information_and_learns(tokenizer):
    model = layered(tokenizer)
    m = model.memory_size
    memory = torch.randn(2, 2 * m, 32)
    for k in range(2):
        changed = memory.clone()
        changed[:, k * m:(k + 1) * m] += 1.0
        with torch.no_grad():
            assert not torch.allclose(model(steps(), memory=memory).logits, model(steps(), memory=changed).logits)
    model.train()
    model(steps()).logits.sum().backward()
    grad = model.initial_memory.grad
    assert grad[:m].abs().sum() > 0 and grad[m:].abs().sum() > 0


def test_a_working_copy_carries_hooks_of_its_own(tokenizer):
    # checkpointed segments: tests/test_fast_paths.py::test_reentrant_checkpoints_give_the_plain_paths_gradients
    model = layered(tokenizer, dropout=0.1).eval()
    batch = steps(n=3)
    copy = model.copy_without_caches()  # the hooks travel with the copied blocks and read their own attributes
    with torch.no_grad():
        torch.testing.assert_close(copy(batch).memory, model(batch).memory)


def test_the_static_step_cuda_graphs_replay_gives_the_same_memory(tokenizer):
    model = layered(tokenizer).eval()
    model.graph_devices = ("cpu",)  # the captured step's path, run eagerly on CPU
    batch = steps(batch=3, n=3)
    with torch.inference_mode():
        plain = model(batch)
        static = model(batch, cuda_graphs=True)
    assert len(model.segment_graphs) == 1
    torch.testing.assert_close(static.memory, plain.memory)
    torch.testing.assert_close(static.logits, plain.logits)


def test_a_plain_model_has_no_hooks_and_a_decoder_or_compiled_blocks_are_refused(tokenizer):
    from conftest import decoder_engine

    plain = RecurrentMemory(tiny_bert(), memory_size=3, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id)
    assert plain.initial_memory.shape == (3, 32)
    assert all(not block._forward_pre_hooks for block in transformer_blocks(plain.backbone))
    with pytest.raises(ValueError, match="encoder layout"):
        RecurrentMemory(decoder_engine("tiny-llama").backbone, memory_size=3, num_labels=6, layout="decoder",
                        every_layer=True)
    with pytest.raises(ValueError, match="not compiled"):
        layered(tokenizer).compile_blocks()
