"""The decoder layout of the engine (`mem content mem`) and the generate head, on tiny random GPT-2, OPT and Llama."""

import pytest
import torch

from conftest import DECODER_PRESETS, decoder_engine, tiny_decoder
from rmt_cli.attention import eager_attention
from rmt_cli.engine import RecurrentMemory, content_length
from rmt_cli.heads import IGNORE, GenerateHead


def random_steps(batch, n_steps, content, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1000, 30000, (batch, content), generator=generator) for _ in range(n_steps)]


def test_decoder_segment_is_read_slots_content_write_slots_from_position_zero():
    assert content_length(512, 10, "decoder") == 492 and content_length(512, 10) == 499
    engine = decoder_engine(memory_size=10)
    seen = []
    engine.backbone.base_model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs),
                                                         with_kwargs=True)
    steps = random_steps(2, 3, content_length(512, 10, "decoder"))
    with torch.no_grad():
        out = engine(steps)
    assert [call["inputs_embeds"].shape for call in seen] == [torch.Size([2, 512, 32])] * 3
    assert all(torch.equal(call["position_ids"][0], torch.arange(512)) for call in seen)
    first = seen[0]["inputs_embeds"][0]
    embed = engine.backbone.get_input_embeddings()
    assert torch.equal(first[:10], engine.initial_memory) and torch.equal(first[-10:], engine.initial_memory)
    assert torch.equal(first[10:-10], embed(steps[0][0]))
    second = seen[1]["inputs_embeds"][0]  # the memory written by segment 0 is read and written by segment 1
    assert not torch.equal(second[:10], engine.initial_memory) and torch.equal(second[:10], second[-10:])
    assert out.memory.shape == (2, 10, 32)


@pytest.mark.parametrize("preset", DECODER_PRESETS)
def test_decoder_attention_is_causal_and_write_slots_see_the_whole_segment(preset):
    engine, m, content = decoder_engine(preset, memory_size=3), 3, 8
    memory, tokens = engine.start_memory(1), random_steps(1, 1, content)[0]
    with torch.no_grad(), eager_attention(engine.backbone):
        _, _, out = engine.read_segment(memory, tokens, output_attentions=True)
        changed = tokens.clone()
        changed[0, 0] += 1  # the first content token
        _, _, out_changed = engine.read_segment(memory, changed)
    size = 2 * m + content
    for attn in out.attentions:  # [1, heads, size, size] per layer
        assert attn.shape[-2:] == (size, size)
        assert torch.all(attn[0].triu(1) == 0)  # causal: no query looks ahead
        assert torch.all(attn[0, :, size - m:, :size - m] > 0)  # every write slot sees every read slot and token
        assert torch.all(attn[0, :, :m, m:] == 0)  # read slots come before the content: they see none of it
    hidden, hidden_changed = out.last_hidden_state, out_changed.last_hidden_state
    torch.testing.assert_close(hidden[:, :m], hidden_changed[:, :m])  # read slots do not see the content
    assert not torch.allclose(hidden[:, -m:], hidden_changed[:, -m:])  # write slots do


@pytest.mark.parametrize("preset", DECODER_PRESETS)
def test_information_flows_through_decoder_memory(preset):
    engine = decoder_engine(preset)
    steps = random_steps(2, 3, 16)
    changed = [steps[0].clone(), *steps[1:]]
    changed[0][:, :8] = torch.randint(1000, 30000, (2, 8), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a, b = engine(steps).logits, engine(changed).logits
        without_memory = RecurrentMemory(engine.backbone, 0, 6, layout="decoder").eval()
        c, d = without_memory(steps).logits, without_memory(changed).logits
    assert not torch.allclose(a, b, atol=1e-6)
    torch.testing.assert_close(c, d)  # with no memory, an earlier segment cannot reach the answer


@pytest.mark.parametrize("preset", DECODER_PRESETS)
def test_right_aligned_mixed_decoder_batch_equals_each_sample_alone(preset):
    engine = decoder_engine(preset)
    counts = [3, 2, 1]  # sorted longest first, as batches.BatchPlan orders them
    alone = [random_steps(1, n, 12, seed=10 + i) for i, n in enumerate(counts)]
    batched = [torch.cat([alone[i][t - (3 - n)] for i, n in enumerate(counts) if n >= 3 - t]) for t in range(3)]
    with torch.no_grad():
        together = engine(batched)
        separate = [engine(steps) for steps in alone]
    torch.testing.assert_close(together.logits, torch.cat([s.logits for s in separate]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.memory, torch.cat([s.memory for s in separate]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", DECODER_PRESETS)
def test_generation_matches_the_teacher_forced_argmax(preset):
    engine = decoder_engine(preset, head="generate")
    steps = random_steps(3, 2, 10)
    with torch.no_grad():
        generated = engine.generate(steps, 4)
        forced = engine(steps, answer=generated[:, :-1]).logits
        first = engine(steps, answer=generated[:, :0]).logits
    assert generated.shape == (3, 4) and forced.shape == (3, 4, engine.backbone.config.vocab_size)
    assert torch.equal(forced.argmax(-1), generated)
    torch.testing.assert_close(forced[:, 0], first[:, 0])  # answer tokens never reach the question's prediction


def test_generate_on_streamed_steps_and_through_the_static_step_path():
    engine = decoder_engine("tiny-llama", head="generate")
    engine.graph_devices = ("cpu",)
    steps = random_steps(2, 3, 10)
    with torch.inference_mode():
        plain = engine.generate(steps, 3)
        streamed = engine.generate(iter(steps), 3, batch=2, n_steps=3)
        static = engine.generate(iter(steps), 3, batch=2, n_steps=3, cuda_graphs=True)
    assert torch.equal(plain, streamed) and torch.equal(plain, static) and len(engine.segment_graphs) == 1


def test_static_segment_step_of_a_decoder_equals_forward():
    engine = decoder_engine("tiny-opt")
    engine.graph_devices = ("cpu",)
    steps = random_steps(4, 3, 12)
    steps[0] = steps[0][:2]  # two samples start one segment later
    with torch.inference_mode():
        plain = engine(steps)
        static = engine(steps, cuda_graphs=True)
    assert len(engine.segment_graphs) == 1
    torch.testing.assert_close(static.logits, plain.logits)
    torch.testing.assert_close(static.memory, plain.memory)


def test_activation_checkpointing_of_the_answer_segment_gives_the_same_gradients():
    engine = decoder_engine("tiny-gpt2", head="generate").train()
    steps, answer = random_steps(2, 2, 10), torch.randint(1000, 30000, (2, 2))
    grads = []
    for checkpointed in (False, True):
        engine.zero_grad()
        engine(steps, answer=answer, checkpoint_segments=checkpointed).logits.sum().backward()
        grads.append(engine.initial_memory.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def test_engine_refuses_mismatched_heads_and_layouts():
    with pytest.raises(ValueError, match="decoder"):
        RecurrentMemory(tiny_decoder(), 2, 6, layout="encoder", head="generate")
    engine = decoder_engine()
    with pytest.raises(ValueError, match="answer"):
        engine(random_steps(1, 1, 8), answer=torch.zeros(1, 1, dtype=torch.long))


def test_answer_targets_end_with_an_end_token_and_match_exactly(tokenizer):
    head = GenerateHead(tokenizer, ("hallway", "bathroom", "john"))
    end = tokenizer.sep_token_id  # MiniLM's tokenizer has no EOS
    assert head.answer_length == 2 and head.answer_positions == 1
    hallway = tokenizer(" hallway", add_special_tokens=False)["input_ids"]
    assert head.targets[0].tolist() == [*hallway, end]
    generated = torch.tensor([[*hallway, end], [hallway[0], 999], [end, end]])
    assert head.match(generated).tolist() == [0, -1, -1]


def test_generate_loss_is_cross_entropy_on_the_answer_tokens_only(tokenizer):
    engine = decoder_engine(head="generate")
    head = GenerateHead(tokenizer, ("hallway", "bathroom"))
    steps, labels = random_steps(2, 2, 10), torch.tensor([1, 0])
    targets = head.targets[labels]
    with torch.no_grad():
        logits = engine(steps, answer=targets[:, :-1]).logits
        expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        assert IGNORE not in targets  # both answers are one word piece and the end token
        torch.testing.assert_close(head.loss(engine, steps, labels)[0], expected)


@pytest.mark.parametrize("preset", DECODER_PRESETS)
def test_rescaled_writes_give_memory_at_the_token_embeddings_scale_and_learn_it(preset):
    plain = decoder_engine(preset)
    engine = RecurrentMemory(plain.backbone, memory_size=3, num_labels=6, dropout=0.0, layout="decoder",
                             rescale_writes=True)
    embeddings = engine.backbone.get_input_embeddings().weight.detach()
    torch.testing.assert_close(engine.write_scale.detach(), embeddings.pow(2).mean(-1).sqrt().mean())
    out = engine(random_steps(2, 3, 16))
    rms = out.memory.pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, engine.write_scale.item()), rtol=1e-3, atol=1e-5)
    out.logits.sum().backward()
    assert engine.write_scale.grad is not None and engine.write_scale.grad.abs() > 0
    assert plain.write_scale is None and "write_scale" not in dict(plain.named_parameters())
