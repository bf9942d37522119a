import pytest
import torch

from conftest import tiny_bert
from rmt_cli.engine import RecurrentMemory, content_length


def random_steps(batch, n_steps, content, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1000, 30000, (batch, content), generator=generator) for _ in range(n_steps)]


def test_segment_layout_fills_512_positions_with_499_content_tokens(tokenizer):
    assert content_length(512, 10) == 499
    model = RecurrentMemory(tiny_bert(), memory_size=10, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["inputs_embeds"].shape),
                                             with_kwargs=True)
    model(random_steps(2, 3, content_length(512, 10)))
    assert seen == [torch.Size([2, 512, 32])] * 3


def test_segment_layout_places_cls_memory_and_separators(tokenizer, tiny_engine):
    tokens = random_steps(1, 1, 20)[0]
    captured = []
    tiny_engine.backbone.register_forward_pre_hook(
        lambda mod, args, kwargs: captured.append(kwargs["inputs_embeds"]), with_kwargs=True)
    with torch.no_grad():
        tiny_engine([tokens])
    embed = tiny_engine.backbone.get_input_embeddings()
    x = captured[0][0]
    m = tiny_engine.memory_size
    assert torch.equal(x[0], embed.weight[tokenizer.cls_token_id])
    assert torch.equal(x[1:1 + m], tiny_engine.initial_memory)
    assert torch.equal(x[1 + m], embed.weight[tokenizer.sep_token_id])
    assert torch.equal(x[2 + m:-1], embed(tokens[0]))
    assert torch.equal(x[-1], embed.weight[tokenizer.sep_token_id])


def test_information_flows_through_memory(tiny_engine):
    steps = random_steps(2, 3, 16)
    changed = [steps[0].clone(), *steps[1:]]
    changed[0][:, :8] = torch.randint(1000, 30000, (2, 8), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a = tiny_engine(steps).logits
        b = tiny_engine(changed).logits
    assert not torch.allclose(a, b, atol=1e-6)


def embedding_grad_rows(model, steps, grad_steps):
    model.zero_grad()
    model(steps, grad_steps=grad_steps).logits.sum().backward()
    memory_grad = model.initial_memory.grad
    return model.backbone.get_input_embeddings().weight.grad, torch.zeros(1) if memory_grad is None else memory_grad


def test_truncated_bptt_stops_gradients_before_the_last_k_segments(tiny_engine):
    # Each step uses its own disjoint token ids, so gradient rows tell which steps were reached.
    steps = [torch.full((2, 8), 2000 + 100 * t) + torch.arange(8) for t in range(3)]
    rows_of = [steps[t][0] for t in range(3)]
    grad, memory_grad = embedding_grad_rows(tiny_engine, steps, grad_steps=None)
    assert all(grad[rows].abs().sum() > 0 for rows in rows_of) and memory_grad.abs().sum() > 0
    grad, memory_grad = embedding_grad_rows(tiny_engine, steps, grad_steps=2)
    assert grad[rows_of[0]].abs().sum() == 0 and memory_grad.abs().sum() == 0
    assert grad[rows_of[1]].abs().sum() > 0 and grad[rows_of[2]].abs().sum() > 0
    grad, _ = embedding_grad_rows(tiny_engine, steps, grad_steps=1)
    assert grad[rows_of[1]].abs().sum() == 0 and grad[rows_of[2]].abs().sum() > 0


def test_truncated_bptt_runs_the_segments_before_the_window_without_autograd(tiny_engine):
    steps = random_steps(2, 4, 8)
    grad_enabled = []
    tiny_engine.backbone.register_forward_pre_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    tiny_engine(steps, grad_steps=1)
    assert grad_enabled == [False, False, False, True]


def test_truncated_bptt_gradients_equal_a_detached_prefix(tiny_engine):
    steps = random_steps(2, 4, 8)
    tiny_engine.zero_grad()
    tiny_engine(steps, grad_steps=2).logits.sum().backward()
    truncated = {n: p.grad.clone() for n, p in tiny_engine.named_parameters() if p.grad is not None}
    tiny_engine.zero_grad()
    prefix = tiny_engine(steps[:2]).memory.detach()
    tiny_engine(steps[2:], memory=prefix).logits.sum().backward()
    reference = {n: p.grad for n, p in tiny_engine.named_parameters() if p.grad is not None}
    assert truncated.keys() == reference.keys()
    for name, grad in truncated.items():
        torch.testing.assert_close(grad, reference[name], rtol=1e-5, atol=1e-6)


def test_truncated_bptt_trains_the_initial_memory_of_samples_that_start_inside_the_window(tiny_engine):
    # Sample 0 reads 3 segments, sample 1 only the last: with a window of 1, only sample 1 reaches the initial memory.
    long, short = random_steps(1, 3, 8, seed=1), random_steps(1, 1, 8, seed=2)
    steps = [long[0], long[1], torch.cat([long[2], short[0]])]
    tiny_engine.zero_grad()
    tiny_engine(steps, grad_steps=1).logits[1].sum().backward()
    alone = tiny_engine.initial_memory.grad.clone()
    assert alone.abs().sum() > 0
    tiny_engine.zero_grad()
    tiny_engine(short).logits.sum().backward()
    torch.testing.assert_close(alone, tiny_engine.initial_memory.grad)


def test_right_aligned_mixed_batch_equals_each_sample_alone(tiny_engine):
    counts = [3, 2, 1]  # sorted longest first, as batches.BatchPlan orders them
    alone = [random_steps(1, n, 12, seed=10 + i) for i, n in enumerate(counts)]
    n_steps = max(counts)
    batched = []
    for t in range(n_steps):
        rows = [alone[i][t - (n_steps - n)] for i, n in enumerate(counts) if n >= n_steps - t]
        batched.append(torch.cat(rows))
    with torch.no_grad():
        together = tiny_engine(batched).logits
        separate = torch.cat([tiny_engine(steps).logits for steps in alone])
    torch.testing.assert_close(together, separate, atol=1e-5, rtol=1e-5)


def test_activation_checkpointing_gives_the_same_gradients(tiny_engine):
    steps = random_steps(2, 3, 10)
    tiny_engine.train()
    tiny_engine.zero_grad()
    tiny_engine(steps).logits.sum().backward()
    plain = tiny_engine.initial_memory.grad.clone()
    tiny_engine.zero_grad()
    tiny_engine(steps, checkpoint_segments=True).logits.sum().backward()
    torch.testing.assert_close(tiny_engine.initial_memory.grad, plain)


def test_memory_state_can_be_carried_across_calls(tiny_engine):
    steps = random_steps(2, 4, 10)
    with torch.no_grad():
        whole = tiny_engine(steps)
        first = tiny_engine(steps[:2])
        rest = tiny_engine(steps[2:], memory=first.memory)
    torch.testing.assert_close(rest.logits, whole.logits)
    torch.testing.assert_close(rest.memory, whole.memory)


def test_carried_rows_start_from_the_carried_memory_and_the_others_from_the_initial_one(tiny_engine):
    steps = random_steps(3, 2, 10)
    with torch.no_grad():
        earlier = tiny_engine(random_steps(3, 2, 10, seed=5)).memory
    rows = torch.tensor([True, False, True])
    tiny_engine.zero_grad()
    out = tiny_engine(steps, carried=(rows, earlier))
    out.logits.sum().backward()
    with torch.no_grad():
        from_carried = tiny_engine(steps, memory=earlier).logits
        from_initial = tiny_engine(steps).logits
    torch.testing.assert_close(out.logits[rows], from_carried[rows])
    torch.testing.assert_close(out.logits[~rows], from_initial[~rows])
    with_row_1 = tiny_engine.initial_memory.grad.clone()  # the initial memory learns from row 1 alone
    tiny_engine.zero_grad()
    tiny_engine([step[1:2] for step in steps]).logits.sum().backward()
    torch.testing.assert_close(with_row_1, tiny_engine.initial_memory.grad)


def mixed_batch_steps(counts, content=12):
    """Right-aligned steps of samples with `counts` segments each (longest first), as batches.BatchPlan builds."""
    alone = [random_steps(1, n, content, seed=20 + i) for i, n in enumerate(counts)]
    n_steps = max(counts)
    return [torch.cat([alone[i][t - (n_steps - n)] for i, n in enumerate(counts) if n >= n_steps - t])
            for t in range(n_steps)]


def test_cuda_graphs_flag_on_cpu_runs_the_eager_path(tiny_engine):
    steps = mixed_batch_steps([4, 3, 3])
    with torch.inference_mode():
        plain = tiny_engine(steps)
        flagged = tiny_engine(steps, cuda_graphs=True)
    assert tiny_engine.segment_graphs == {}
    assert torch.equal(flagged.logits, plain.logits) and torch.equal(flagged.memory, plain.memory)


def test_static_segment_step_equals_forward(tiny_engine):
    # The path a CUDA graph replays, run eagerly on CPU: full-batch steps copy tokens and memory into static
    # buffers, steps with fewer rows run as before, and the returned memory is not the reused buffer.
    tiny_engine.graph_devices = ("cpu",)
    steps = mixed_batch_steps([5, 5, 3, 2])
    with torch.inference_mode():
        plain = tiny_engine(steps)
        static = tiny_engine(steps, cuda_graphs=True)
        assert len(tiny_engine.segment_graphs) == 1
        (graph,) = tiny_engine.segment_graphs.values()
        assert graph.graph is None and static.memory.data_ptr() != graph.memory.data_ptr()
        torch.testing.assert_close(static.logits, plain.logits)
        torch.testing.assert_close(static.memory, plain.memory)
        kept = static.memory.clone()
        again = tiny_engine(random_steps(4, 3, 12, seed=5), cuda_graphs=True)  # same shape: reuses the buffers
        assert len(tiny_engine.segment_graphs) == 1 and torch.equal(static.memory, kept)
        torch.testing.assert_close(again.logits, tiny_engine(random_steps(4, 3, 12, seed=5)).logits)


def test_a_step_that_cannot_be_captured_runs_without_a_graph(tiny_engine, monkeypatch):
    """A backbone whose forward does what CUDA graph capture forbids (transformers 5.17's eager mask copied a host
    scalar to the GPU): one warning, and the step runs eagerly with the same results instead of failing."""
    import rmt_cli.engine as engine

    def refuse(step):
        step()  # capture fails partway through the step's forward
        raise RuntimeError("Cannot copy between CPU and CUDA tensors during CUDA graph capture\nmore detail")

    monkeypatch.setattr(engine, "capture_graph", refuse)
    tokens, memory = random_steps(3, 1, 12)[0], tiny_engine.initial_memory.expand(3, -1, -1).clone()
    with torch.inference_mode():
        graph = engine.SegmentGraph(tiny_engine, 12, memory.shape, memory.dtype, tokens.device)
        with pytest.warns(RuntimeWarning, match="cannot be captured as a CUDA graph .Cannot copy between CPU"):
            graph._capture()  # what a CUDA device does on construction
        readout = graph.run(tokens, memory)
        new_memory, plain = tiny_engine._read_states(memory, tokens)
    assert graph.graph is None
    torch.testing.assert_close(readout, plain)
    torch.testing.assert_close(graph.memory, new_memory)


def test_static_segment_step_is_off_while_training_or_with_grad(tiny_engine):
    tiny_engine.graph_devices = ("cpu",)
    steps = random_steps(2, 2, 10)
    with torch.no_grad():
        tiny_engine.train()
        tiny_engine(steps, cuda_graphs=True)
    tiny_engine.eval()
    tiny_engine(steps, cuda_graphs=True).logits.sum().backward()
    assert tiny_engine.segment_graphs == {} and tiny_engine.initial_memory.grad is not None


def test_cuda_graphs_are_skipped_for_large_batches(tiny_engine):
    tiny_engine.graph_devices = ("cpu",)
    tiny_engine.graph_max_rows = 2
    with torch.no_grad():
        tiny_engine(random_steps(4, 2, 12), cuda_graphs=True)
        assert tiny_engine.segment_graphs == {}
        tiny_engine(random_steps(2, 2, 12), cuda_graphs=True)
    assert len(tiny_engine.segment_graphs) == 1


@pytest.mark.parametrize("layout, start", [("encoder", 0.88), ("decoder", 0.88), ("encoder", 0.1)])
def test_gated_writes_mix_what_a_segment_wrote_into_the_memory_it_read(layout, start, tiny_engine, tokenizer):
    """new = old + g * (written - old), g = sigmoid(W written + b) per feature: gate_start everywhere at the start,
    the old memory exactly where the gate closes; the gate learns."""
    from conftest import decoder_engine

    plain = tiny_engine if layout == "encoder" else decoder_engine("tiny-llama")
    ids = dict(cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id) if layout == "encoder" else {}
    gated = RecurrentMemory(plain.backbone, memory_size=plain.memory_size, num_labels=6, dropout=0.0,
                            layout=layout, gated_writes=True, gate_start=start, **ids)
    memory = torch.randn(2, plain.memory_size, plain.initial_memory.shape[1])
    tokens = torch.randint(1000, 30000, (2, 10))
    written, _, _ = plain.read_segment(memory, tokens)
    new, _, _ = gated.read_segment(memory, tokens)
    torch.testing.assert_close(new, memory + start * (written - memory))
    with torch.no_grad():
        gated.write_gate.bias.fill_(-40.0)  # closed: every segment leaves the memory as it was
    out = gated([torch.randint(1000, 30000, (2, 10)) for _ in range(3)], memory=memory)
    torch.testing.assert_close(out.memory, memory)
    with torch.no_grad():
        gated.write_gate.bias.fill_(2.0)
    gated([torch.randint(1000, 30000, (2, 10)) for _ in range(3)]).logits.sum().backward()
    assert gated.write_gate.weight.grad.abs().sum() > 0
    assert plain.write_gate is None and not any("write_gate" in name for name, _ in plain.named_parameters())
