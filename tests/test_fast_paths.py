"""Inference and training fast paths against the plain path: bf16 weights cast once, CUDA graph replay at any batch
size (its static-buffer path, run eagerly on CPU), fused AdamW; and the switch that turns each off."""

import copy
from contextlib import nullcontext

import pytest
import torch
from omegaconf import OmegaConf

from conftest import DECODER_PRESETS, decoder_engine, tiny_bert
from rmt_cli.engine import RecurrentMemory
from rmt_cli.errors import UsageError
from rmt_cli.experiment import apply_inference_settings, autocast_for, inference_settings
from rmt_cli.schema import InferenceCommand
from rmt_cli.train import build_optimizer

BF16 = dict(atol=3e-2, rtol=3e-2)  # a few bf16 roundings (8 bits of mantissa) through a 2-layer model


def random_steps(batch, n_steps, content, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1000, 30000, (batch, content), generator=generator) for _ in range(n_steps)]


def mixed_batch_steps(counts, content=12):
    """Right-aligned steps of samples with `counts` segments each (longest first), as batches.BatchPlan builds."""
    alone = [random_steps(1, n, content, seed=20 + i) for i, n in enumerate(counts)]
    n_steps = max(counts)
    return [torch.cat([alone[i][t - (n_steps - n)] for i, n in enumerate(counts) if n >= n_steps - t])
            for t in range(n_steps)]


def fast_copy(model: RecurrentMemory, **settings) -> RecurrentMemory:
    fast = copy.deepcopy(model)
    settings = {"inference_dtype": "bf16", "graph_max_rows": None, **settings}
    apply_inference_settings(fast, inference_settings(**settings))
    fast.graph_devices = ("cpu",)  # the CUDA-graph path's static buffers, run eagerly
    return fast


def assert_close_bf16(fast, plain):
    assert fast.memory.dtype == torch.bfloat16 and plain.memory.dtype == torch.float32
    torch.testing.assert_close(fast.logits, plain.logits, **BF16)
    torch.testing.assert_close(fast.memory.float(), plain.memory, **BF16)


def test_bf16_encoder_equals_the_fp32_path_on_a_mixed_batch(tiny_engine):
    steps = mixed_batch_steps([4, 4, 3, 1] * 3)  # 12 rows: above the default cap of 8
    fast = fast_copy(tiny_engine)
    with torch.inference_mode():
        plain = tiny_engine(steps)
        eager = fast(steps)
        graphed = fast(steps, cuda_graphs=True)
    assert len(fast.segment_graphs) == 1  # the static step ran at batch 12
    assert_close_bf16(eager, plain)
    assert torch.equal(graphed.logits, eager.logits) and torch.equal(graphed.memory, eager.memory)


@pytest.mark.parametrize("preset", DECODER_PRESETS)
def test_bf16_decoder_equals_the_fp32_path_on_a_mixed_batch(preset):
    plain_model = decoder_engine(preset)
    fast = fast_copy(plain_model)
    steps = mixed_batch_steps([3, 3, 2, 1])
    with torch.inference_mode():
        plain, eager, graphed = plain_model(steps), fast(steps), fast(steps, cuda_graphs=True)
    assert_close_bf16(eager, plain)
    assert torch.equal(graphed.logits, eager.logits) and torch.equal(graphed.memory, eager.memory)


def test_bf16_generate_head_equals_the_fp32_path():
    plain_model = decoder_engine("tiny-llama", head="generate")
    fast = fast_copy(plain_model)
    steps, answer = mixed_batch_steps([3, 2, 2]), torch.randint(1000, 30000, (3, 2))
    with torch.inference_mode():
        plain, eager = plain_model(steps, answer=answer), fast(steps, answer=answer)
        graphed = fast(steps, answer=answer, cuda_graphs=True)
        generated = fast.generate(steps, 3, cuda_graphs=True)
        forced = fast(steps, answer=generated[:, :-1], cuda_graphs=True)
    assert_close_bf16(eager, plain)
    assert torch.equal(graphed.logits, eager.logits) and len(fast.segment_graphs) == 1
    assert torch.equal(forced.logits.argmax(-1), generated)  # greedy decoding reads its own tokens back


def test_bf16_weights_are_cast_once_and_every_segment_reads_bf16(tiny_engine):
    fast = fast_copy(tiny_engine)
    assert {p.dtype for p in fast.parameters()} == {torch.bfloat16}
    seen = []
    fast.backbone.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["inputs_embeds"].dtype),
                                            with_kwargs=True)
    with torch.inference_mode():
        fast(random_steps(2, 3, 10))
    assert seen == [torch.bfloat16] * 3
    assert isinstance(autocast_for(fast, torch.device("cuda")), nullcontext)  # nothing left for autocast to cast


def test_the_switches_off_leave_the_plain_path(tiny_engine):
    steps = mixed_batch_steps([4, 4, 3, 1] * 3)
    plain_model = fast_copy(tiny_engine, inference_dtype="fp32", graph_max_rows=8)
    assert {p.dtype for p in plain_model.parameters()} == {torch.float32}
    with torch.inference_mode():
        plain, flagged = tiny_engine(steps), plain_model(steps, cuda_graphs=True)
    assert plain_model.segment_graphs == {}  # 12 rows: above the cap, eager
    assert torch.equal(flagged.logits, plain.logits) and torch.equal(flagged.memory, plain.memory)
    default = copy.deepcopy(tiny_engine)
    default.graph_max_rows = 8
    apply_inference_settings(default, OmegaConf.structured(InferenceCommand))  # the defaults: fp32, every batch
    assert default.graph_max_rows is None and default.initial_memory.dtype == torch.float32


@pytest.mark.parametrize("preset, path", [("tiny", "encoder.layer"), ("tiny-gpt2", "transformer.h"),
                                          ("tiny-opt", "model.decoder.layers"), ("tiny-llama", "model.layers")])
def test_the_transformer_blocks_are_found_in_every_layout(preset, path, tiny_engine):
    from rmt_cli.engine import transformer_blocks

    backbone = tiny_engine.backbone if preset == "tiny" else decoder_engine(preset).backbone
    assert transformer_blocks(backbone) is backbone.get_submodule(path)


def test_compiled_blocks_give_the_eager_paths_logits_and_replace_cuda_graphs(tiny_engine):
    steps = mixed_batch_steps([4, 4, 3, 1] * 3)
    compiled = fast_copy(tiny_engine, inference_dtype="fp32", compile_blocks=True)
    blocks = compiled.backbone.encoder.layer
    assert compiled.blocks_compiled and all(block._compiled_call_impl is not None for block in blocks)
    with torch.inference_mode():
        plain, flagged = tiny_engine(steps), compiled(steps, cuda_graphs=True)
    assert compiled.segment_graphs == {}  # compiled blocks run step by step, never under graph capture
    torch.testing.assert_close(flagged.logits, plain.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(flagged.memory, plain.memory, atol=1e-5, rtol=1e-4)
    assert not fast_copy(tiny_engine).blocks_compiled  # the switch off: blocks as loaded


@pytest.mark.parametrize("settings, message", [({"inference_dtype": "fp16"}, "inference_dtype"),
                                               ({"graph_max_rows": 0}, "graph_max_rows")])
def test_inference_settings_refuse_unknown_values(settings, message):
    from rmt_cli.config_check import check_value

    (key, value), = settings.items()
    with pytest.raises(UsageError, match=message):
        check_value("eval", key, value)


def test_fused_adamw_only_on_cuda_and_when_switched_on(tiny_engine):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert build_optimizer(tiny_engine, 1e-3, 0.01, cuda, fused=True).defaults["fused"] is True
    assert not build_optimizer(tiny_engine, 1e-3, 0.01, cuda, fused=False).defaults["fused"]
    assert not build_optimizer(tiny_engine, 1e-3, 0.01, cpu, fused=True).defaults["fused"]


def test_fused_adamw_takes_the_same_steps_as_the_plain_one(tiny_engine):
    models = [copy.deepcopy(tiny_engine).train() for _ in range(2)]
    steps = random_steps(2, 2, 10)
    for model, fused in zip(models, (False, True), strict=True):
        optimizer = build_optimizer(model, 1e-3, 0.01, torch.device("cuda"), fused=fused)  # fused runs on CPU too
        for _ in range(2):
            optimizer.zero_grad()
            model(steps).logits.sum().backward()
            optimizer.step()
    for plain, fused in zip(models[0].parameters(), models[1].parameters(), strict=True):
        # Adam divides rounding by tiny roots: where a gradient is near 0 the two kernels' updates differ by up to 1%
        # of a step (lr 1e-3); a different rule (bias correction, weight decay, lr) would differ by whole steps
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=3e-5)
    assert not torch.equal(models[0].initial_memory, tiny_engine.initial_memory)


def test_training_assembles_the_next_batch_while_the_device_runs_the_backward(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir
    from rmt_cli.experiment import build_experiment
    from rmt_cli.samples import SampleFactory
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.train import Trainer

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "trainer.device=cpu"])
    stages = curriculum_stages(cfg)
    trainer = Trainer(cfg, build_experiment(cfg, "cpu", with_training_data=True), stages, tmp_path)
    trainer.accumulate_gradients(stages[1], 1)
    batch = int(cfg.trainer.batch_size)
    (key, (plan, tokens)) = trainer.prefetched
    assert key == (2, batch) and trainer.state.next_sample == batch
    trainer.prefetched = None
    fresh_plan, fresh_tokens = trainer.host_batch(stages[1], batch, 2)
    assert all((a == b).all() for a, b in zip(tokens, fresh_tokens, strict=True)) and len(tokens) == len(fresh_tokens)
    assert (plan.labels() == fresh_plan.labels()).all()
    trainer.prefetched = (key, (plan, tokens))
    drawn = []
    original = SampleFactory.training_sample
    monkeypatch.setattr(SampleFactory, "training_sample", lambda self, *a, **k: drawn.append(a[1]) or
                        original(self, *a, **k))
    trainer.accumulate_gradients(stages[1], stages[1].steps)  # the stage's last step: uses the batch, builds none
    assert drawn == [] and trainer.prefetched[0] == key


def without_masks(model: RecurrentMemory) -> RecurrentMemory:
    from rmt_cli.unmasked_attention import skip_attention_masks

    switched = copy.deepcopy(model)
    assert skip_attention_masks(switched.backbone, switched.layout)
    return switched


@pytest.mark.parametrize("preset", ("tiny",) + DECODER_PRESETS)
def test_attention_without_masks_equals_transformers_sdpa(preset, tiny_engine):
    """Same logits and memory: an encoder still attends everywhere and a decoder causally (a wrong causality would
    change both), on a mixed batch and, for the decoder, with answer tokens read after the content."""
    plain_model = tiny_engine if preset == "tiny" else decoder_engine(preset, head="generate")
    switched = without_masks(plain_model)
    assert plain_model.backbone.config._attn_implementation == "sdpa"
    steps = mixed_batch_steps([3, 3, 2, 1])
    answer = None if preset == "tiny" else torch.randint(1000, 30000, (4, 2))
    with torch.inference_mode():
        plain, fast = plain_model(steps, answer=answer), switched(steps, answer=answer)
    torch.testing.assert_close(fast.logits, plain.logits)
    torch.testing.assert_close(fast.memory, plain.memory)


@pytest.mark.parametrize("preset", ("tiny", "tiny-llama"))
def test_attention_without_masks_builds_no_mask_even_under_graph_capture(preset, tiny_engine, monkeypatch):
    """transformers' mask builder is never called, also while a CUDA graph is captured (simulated: transformers
    5.17 materialises an all-true mask then, which takes SDPA off its flash kernel)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    def builder_called(*args, **kwargs):
        raise AssertionError("the attention mask builder ran")

    plain_model = tiny_engine if preset == "tiny" else decoder_engine(preset)
    switched = without_masks(plain_model)
    monkeypatch.setitem(ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, "sdpa", builder_called)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    steps = random_steps(2, 2, 10)
    with torch.inference_mode():
        switched(steps)
        with pytest.raises(AssertionError, match="mask builder"):  # transformers' own path does call it
            plain_model(steps)


def test_attention_masks_stay_where_they_are_needed_or_asked_for():
    from transformers import AutoConfig, AutoModel

    from rmt_cli import config_dir
    from rmt_cli.backbones import load_backbone
    from rmt_cli.schema import typed_node
    from rmt_cli.schema.model import BackboneConfig
    from rmt_cli.unmasked_attention import skip_attention_masks

    small = dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=2)
    sliding = AutoModel.from_config(AutoConfig.for_model("mistral", sliding_window=8, **small))
    eager = AutoModel.from_config(AutoConfig.for_model("llama", **small), attn_implementation="eager")
    assert not skip_attention_masks(sliding, "decoder") and sliding.config._attn_implementation == "sdpa"
    assert not skip_attention_masks(eager, "decoder") and eager.config._attn_implementation == "eager"
    tiny = OmegaConf.load(config_dir() / "backbone" / "tiny.yaml")
    assert load_backbone(typed_node(BackboneConfig, tiny)).model.config._attn_implementation != "sdpa"
    kept = load_backbone(typed_node(BackboneConfig, {**OmegaConf.to_container(tiny), "skip_attention_masks": False}))
    assert kept.model.config._attn_implementation == "sdpa"


def test_bf16_inference_with_gated_writes_equals_the_fp32_path(tokenizer):
    """The write gate is cast with every other weight, and its graph step matches eager."""
    from conftest import tiny_bert

    torch.manual_seed(0)
    plain_model = RecurrentMemory(tiny_bert(), memory_size=4, num_labels=6, cls_id=tokenizer.cls_token_id,
                                  sep_id=tokenizer.sep_token_id, dropout=0.0, gated_writes=True).eval()
    with torch.no_grad():
        plain_model.write_gate.weight.normal_(0, 0.05)
    fast = fast_copy(plain_model)
    assert fast.write_gate.weight.dtype == torch.bfloat16
    steps = mixed_batch_steps([4, 3, 3, 1])
    with torch.inference_mode():
        plain, eager, graphed = plain_model(steps), fast(steps), fast(steps, cuda_graphs=True)
    assert_close_bf16(eager, plain)
    assert torch.equal(graphed.logits, eager.logits) and torch.equal(graphed.memory, eager.memory)


def test_memory_parameters_learn_at_their_own_multiple_of_the_lr(tokenizer):
    """trainer.memory_lr_scale: a second parameter group for the initial memory and the write gate; none at 1."""
    from conftest import tiny_bert

    model = RecurrentMemory(tiny_bert(), memory_size=4, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, gated_writes=True)
    cpu = torch.device("cpu")
    assert len(build_optimizer(model, 2e-5, 0.0, cpu, fused=False).param_groups) == 1
    plain, memory = build_optimizer(model, 2e-5, 0.0, cpu, fused=False, memory_lr_scale=50).param_groups
    assert memory["lr"] == pytest.approx(1e-3) and plain["lr"] == 2e-5
    assert {id(p) for p in memory["params"]} == {id(model.initial_memory), id(model.write_gate.weight),
                                                 id(model.write_gate.bias)}
    assert len(plain["params"]) + len(memory["params"]) == len(list(model.parameters()))


def test_a_bf16_prefix_reads_the_segments_before_the_bptt_window_as_a_bf16_copy_of_the_model_would(tiny_engine):
    """trainer.prefix_dtype=bf16: the prefix is exactly the plain forward of the model cast to bf16; the window runs
    on the model itself from the memory it leaves; the copy follows the model's weights and is not module state."""
    steps = mixed_batch_steps([6, 5, 4, 3])  # every row has started before the window (its last 2 steps)
    fast = copy.deepcopy(tiny_engine).train()
    fast.prefix_dtype = torch.bfloat16

    def expected(model):
        as_bf16 = copy.deepcopy(model).to(torch.bfloat16)
        with torch.no_grad():
            prefix = as_bf16(steps[:4], memory=model.start_memory(4).to(torch.bfloat16)).memory
        return model(steps[4:], memory=prefix.float())

    for _ in range(2):  # the second time after a weight changed, as after an optimizer step
        out = fast(steps, grad_steps=2, n_steps=6)
        reference = expected(fast)
        assert torch.equal(out.logits, reference.logits) and torch.equal(out.memory, reference.memory)
        out.logits.sum().backward()
        with torch.no_grad():
            fast.backbone.get_input_embeddings().weight.mul_(1.5)
    assert fast.state_dict().keys() == tiny_engine.state_dict().keys()
    assert {p.dtype for p in fast.parameters()} == {torch.float32}


def test_a_bf16_prefix_stays_within_bf16_tolerance_of_the_plain_path_and_trains_the_rows_that_start_later(
        tiny_engine):
    steps = mixed_batch_steps([6, 4, 3, 1])  # the last row starts inside the window
    plain = copy.deepcopy(tiny_engine).train()
    fast = copy.deepcopy(tiny_engine).train()
    fast.prefix_dtype = torch.bfloat16
    outputs = [model(steps, grad_steps=2, n_steps=6) for model in (plain, fast)]
    torch.testing.assert_close(outputs[1].logits, outputs[0].logits, rtol=0.05, atol=0.02)
    torch.testing.assert_close(outputs[1].memory, outputs[0].memory, rtol=0.05, atol=0.02)
    for out in outputs:
        out.logits.sum().backward()
    assert plain.initial_memory.grad.abs().sum() > 0
    torch.testing.assert_close(fast.initial_memory.grad, plain.initial_memory.grad, rtol=0.05, atol=0.02)
    plain.prefix_dtype = None  # the switch off: the plain path exactly
    assert torch.equal(plain(steps, grad_steps=2, n_steps=6).logits, tiny_engine.train()(steps, grad_steps=2,
                                                                                        n_steps=6).logits)
    tiny_engine.eval()


@pytest.mark.parametrize("fused", [False, True])
def test_a_bf16_working_copy_hands_the_fp32_weights_the_gradients_of_the_fp32_path_at_bf16_precision(tiny_engine,
                                                                                                     fused):
    from rmt_cli.fused_blocks import fuse_blocks, fused_forward
    from rmt_cli.working_copy import WorkingCopy

    steps, labels = mixed_batch_steps([5, 4, 2]), torch.tensor([1, 3, 5])
    model = copy.deepcopy(tiny_engine).train()
    plain = copy.deepcopy(model)  # transformers' blocks in fp32: the gradients expected
    if fused:  # trainer.fused_blocks with trainer.compute_dtype=bf16: the working copy runs the fused blocks
        assert fuse_blocks(model.backbone, live=True)

    def fp32_gradients():
        plain.load_state_dict(model.state_dict())
        plain.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(plain(steps, grad_steps=3, n_steps=5).logits, labels).backward()
        return torch.cat([p.grad.flatten() for p in plain.parameters()])

    working = WorkingCopy(model)
    blocks_forward = {getattr(module.forward, "__func__", None) for module in working.copy.modules()}
    assert (fused_forward in blocks_forward) == fused
    for _ in range(2):  # the second time after the weights changed, as after an optimizer step
        expected = fp32_gradients()
        model.zero_grad(set_to_none=True)
        copy_model = working.refreshed()
        torch.nn.functional.cross_entropy(copy_model(steps, grad_steps=3, n_steps=5).logits.float(), labels).backward()
        working.pass_gradients()
        passed = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert passed.dtype == torch.float32 and expected.norm() > 0
        assert (passed - expected).norm() <= 0.05 * expected.norm()
        assert all(p.grad is None for p in copy_model.parameters())
        with torch.no_grad():
            model.backbone.get_input_embeddings().weight.mul_(1.5)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("checkpoint_segments", [False, True])
def test_compiled_blocks_train_with_the_eager_paths_gradients(tiny_engine, checkpoint_segments):
    steps, labels = mixed_batch_steps([5, 4, 2]), torch.tensor([1, 3, 5])
    eager, compiled = copy.deepcopy(tiny_engine).train(), copy.deepcopy(tiny_engine).train()
    compiled.compile_blocks()
    gradients = []
    for model in (eager, compiled):
        loss = torch.nn.functional.cross_entropy(model(steps, checkpoint_segments=checkpoint_segments).logits, labels)
        loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert gradients[0].norm() > 0
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-5, rtol=1e-4)


def smoke_trainer(run_dir, *overrides):
    """The Trainer of `experiment=smoke` on the CPU with these overrides (nothing trained)."""
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.experiment import build_experiment
    from rmt_cli.train import Trainer

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "trainer.device=cpu", *overrides])
    return Trainer(cfg, build_experiment(cfg, "cpu", with_training_data=True), curriculum_stages(cfg), run_dir)


@pytest.mark.parametrize("key, applied", [
    ("compile_blocks", lambda model: model.blocks_compiled),
    ("reentrant_checkpoints", lambda model: model.reentrant_checkpoints),
    ("fused_blocks", lambda model: all(getattr(block, "fused_live", False) for block in model.backbone.encoder.layer)),
])
def test_trainer_applies_each_switch_when_asked(tmp_path, key, applied):
    for switch in (False, True):
        assert applied(smoke_trainer(tmp_path, f"trainer.{key}={str(switch).lower()}").model) is switch


def test_fused_blocks_give_the_plain_paths_logits_and_memory_on_a_mixed_batch(tiny_engine):
    steps = mixed_batch_steps([4, 4, 3, 1] * 3)
    fused = fast_copy(tiny_engine, inference_dtype="fp32", fused_blocks=True)
    projections = [block.attention.self.query for block in fused.backbone.encoder.layer]
    projections += [block.intermediate.dense for block in fused.backbone.encoder.layer]
    calls = []
    for linear in projections:
        linear.register_forward_hook(lambda *args: calls.append(1))
    with torch.inference_mode():
        plain, eager, graphed = tiny_engine(steps), fused(steps), fused(steps, cuda_graphs=True)
    assert calls == []  # the stacked product and the epilogue ran in their place
    for out in (eager, graphed):  # on CPU the epilogue's GELU is the exact one: float rounding apart, the same
        torch.testing.assert_close(out.logits, plain.logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.memory, plain.memory, atol=1e-5, rtol=1e-4)
    with torch.inference_mode():
        assert_close_bf16(fast_copy(tiny_engine, fused_blocks=True)(steps), plain)


def test_fused_blocks_keep_the_state_dict_and_run_transformers_forward_in_training_mode(tiny_engine):
    from rmt_cli.fused_blocks import fuse_blocks

    fused = copy.deepcopy(tiny_engine)
    assert fuse_blocks(fused.backbone)
    assert fused.state_dict().keys() == tiny_engine.state_dict().keys()  # the stacked weights are not saved
    steps = random_steps(2, 2, 10)
    fused.train()
    plain = copy.deepcopy(tiny_engine).train()
    torch.manual_seed(1)
    trained = fused(steps).logits
    torch.manual_seed(1)
    torch.testing.assert_close(trained, plain(steps).logits, atol=0, rtol=0)
    trained.sum().backward()
    assert fused.backbone.encoder.layer[0].attention.self.query.weight.grad is not None


def test_the_gelu_epilogue_is_the_exact_gelu_on_cpu():
    from rmt_cli.fused_blocks import gelu_dense

    dense = torch.nn.Linear(8, 32)
    hidden = torch.randn(2, 5, 8)
    torch.testing.assert_close(gelu_dense(hidden, dense), torch.nn.functional.gelu(dense(hidden)))


def test_fused_blocks_refuse_a_backbone_without_bert_blocks():
    with pytest.raises(UsageError, match="fused_blocks=true needs a BERT-family encoder"):
        fast_copy(decoder_engine("tiny-llama"), fused_blocks=True)


def test_fused_rms_norms_train_with_the_plain_paths_logits_and_gradients():
    from rmt_cli.fused_norms import fuse_rms_norms

    steps, labels = mixed_batch_steps([4, 3, 2]), torch.tensor([1, 3, 5])
    plain, fused = decoder_engine("tiny-llama").train(), decoder_engine("tiny-llama").train()
    assert fuse_rms_norms(fused.backbone) == 2 * 2 + 1  # two per block, two blocks, and the final norm
    outputs, gradients = [], []
    for model in (plain, fused):
        logits = model(steps).logits
        torch.nn.functional.cross_entropy(logits, labels).backward()
        outputs.append(logits)
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-5)
    assert gradients[0].norm() > 0
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-5, rtol=1e-4)
    assert fused.state_dict().keys() == plain.state_dict().keys()


def test_a_fused_rms_norm_keeps_transformers_order_on_a_bf16_input_of_fp32_weights():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from rmt_cli.fused_norms import fuse_rms_norms

    norm = LlamaRMSNorm(16, eps=1e-6)
    torch.nn.init.normal_(norm.weight, 1.0, 0.3)
    hidden = torch.randn(3, 5, 16).to(torch.bfloat16)
    expected = norm(hidden)  # normalised in fp32, cast to bf16, then times the fp32 weight: fp32 out
    holder = torch.nn.Sequential(norm)
    assert fuse_rms_norms(holder) == 1
    got = norm(hidden)
    assert got.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-2)  # at most one bf16 rounding apart


def test_the_trainer_fuses_the_norms_of_a_decoder_and_refuses_an_encoder(tmp_path):
    from rmt_cli.fused_norms import fused_rms_norm_forward

    decoder = smoke_trainer(tmp_path, "trainer.fused_norms=true", "backbone=tiny-llama").model.backbone
    norms = [m for m in decoder.modules() if type(m).__name__ == "LlamaRMSNorm"]
    assert norms and all(norm.forward.__func__ is fused_rms_norm_forward for norm in norms)
    with pytest.raises(UsageError, match="trainer.fused_norms=true needs a Llama-family decoder"):
        smoke_trainer(tmp_path, "trainer.fused_norms=true")


def dropout_engine(**memory_kind):
    """A tiny encoder whose blocks drop out (p 0.1) in training, as MiniLM's do: checkpointed segments must draw
    the same masks in their recomputation as in their first forward. `memory_kind`: every_layer=True or
    associative=True (its reads switched on: they start at scale 0)."""
    torch.manual_seed(0)
    model = RecurrentMemory(tiny_bert(dropout=0.1), 4, 6, cls_id=101, sep_id=102, **memory_kind).train()
    with torch.no_grad():
        for layer in model.associative or []:
            layer.read_scale.fill_(0.5)
    return model


ENGINES = {"encoder": dropout_engine, "decoder": lambda: decoder_engine("tiny-llama").train(),
           "memory at every layer": lambda: dropout_engine(every_layer=True),
           "associative memory": lambda: dropout_engine(associative=True)}


@pytest.mark.parametrize("layout", list(ENGINES))
@pytest.mark.parametrize("grad_steps", [None, 3])
@pytest.mark.parametrize("counts", [[5, 4, 4], [5, 4, 2]])
@pytest.mark.parametrize("memory_loss", [False, True], ids=["answer loss", "+ a loss on every written memory"])
def test_reentrant_checkpoints_give_the_plain_paths_gradients(layout, grad_steps, counts, memory_loss, monkeypatch):
    """Also with a loss on the memory each segment writes (as trainer.memory_map adds through `memory_hook`): a
    checkpointed segment's memory then gets gradients from that loss and from the segments after it."""
    from rmt_cli import engine as engine_module

    model = ENGINES[layout]()
    steps, labels = mixed_batch_steps(counts), torch.tensor([1, 3, 5])
    styles, checkpoint = [], engine_module.checkpoint

    def recorded_checkpoint(*args, use_reentrant):
        styles.append(use_reentrant)
        return checkpoint(*args, use_reentrant=use_reentrant)

    monkeypatch.setattr(engine_module, "checkpoint", recorded_checkpoint)
    gradients = []
    for checkpointed, reentrant in ((False, False), (True, False), (True, True)):
        model.zero_grad()
        model.reentrant_checkpoints = reentrant
        torch.manual_seed(1)  # the same dropout masks on every path
        written: list[torch.Tensor] = []
        hook = (lambda step, memory, kept=written: kept.append(memory)) if memory_loss else None
        out = model(steps, checkpoint_segments=checkpointed, grad_steps=grad_steps, memory_hook=hook)
        loss = torch.nn.functional.cross_entropy(out.logits, labels)
        (loss + sum(memory.float().pow(2).mean() for memory in written)).backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert gradients[0].norm() > 0 and len({g.numel() for g in gradients}) == 1
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gradients[2], gradients[0], atol=1e-6, rtol=1e-5)
    # Non-reentrant for every segment of the second pass; reentrant for the third, except a window's first segment
    # when every row's memory was cut from its history there (a row starting inside the window keeps the initial
    # memory, which requires a gradient).
    cut = grad_steps is not None and min(counts) > grad_steps
    window = [not cut] + [True] * ((grad_steps or 5) - 1)
    assert styles == [False] * len(window) + window


def test_reentrant_checkpoints_are_refused_across_processes():
    from rmt_cli import distributed
    from rmt_cli.train import check_trainer

    cfg = OmegaConf.create({"trainer": {"devices": 2, "batch_size": 4, "reentrant_checkpoints": True,
                                        "compute_dtype": "fp32", "device": "cpu"}})
    with pytest.raises(UsageError, match="trainer.reentrant_checkpoints=true trains on one process"):
        check_trainer(cfg, distributed.Ranks())


@pytest.mark.parametrize("checkpoint_segments", [False, True])
def test_blocks_fused_for_training_give_transformers_logits_and_gradients_dropout_included(checkpoint_segments):
    from rmt_cli.fused_blocks import fuse_blocks

    plain = dropout_engine()
    fused = copy.deepcopy(plain)
    assert fuse_blocks(fused.backbone, live=True)
    steps, labels = mixed_batch_steps([5, 4, 2]), torch.tensor([1, 3, 5])
    results = []
    for model in (plain, fused):
        torch.manual_seed(1)  # the same dropout masks, drawn in the same order
        out = model(steps, checkpoint_segments=checkpoint_segments)
        torch.nn.functional.cross_entropy(out.logits, labels).backward()
        results.append((out.logits, out.memory, torch.cat([p.grad.flatten() for p in model.parameters()])))
    (plain_logits, plain_memory, plain_grads), (logits, memory, grads) = results
    torch.manual_seed(2)
    assert not torch.allclose(plain(steps).logits, plain_logits)  # dropout is on: another seed, other logits
    torch.testing.assert_close(logits, plain_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(memory, plain_memory, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads, plain_grads, atol=1e-5, rtol=1e-4)


def test_blocks_fused_for_training_validate_with_the_weights_as_they_are_now():
    from rmt_cli.fused_blocks import fuse_blocks

    plain = dropout_engine().eval()
    fused = copy.deepcopy(plain)
    fuse_blocks(fused.backbone, live=True)
    steps = mixed_batch_steps([3, 2])
    for model in (plain, fused):  # a training step's change to the weights, made in place as AdamW makes it
        with torch.no_grad():
            for block in model.backbone.encoder.layer:
                block.attention.self.key.weight.mul_(1.5)
    with torch.no_grad():
        torch.testing.assert_close(fused(steps).logits, plain(steps).logits, atol=1e-5, rtol=1e-4)
    assert set(fused.state_dict()) == set(plain.state_dict())  # transformers' keys, nothing stacked saved

