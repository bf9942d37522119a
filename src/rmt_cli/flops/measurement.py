"""`rmt flops --measure`: real forwards of small random models under torch.utils.flop_counter.FlopCounterMode,
next to the analytic count (matmul convention) of the same forwards.

The models are built from configs, never downloaded: three tiny families (BERT, OPT, GPT-2) whose position count
follows the longest measured input, or the `--backbone` config with random weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from rmt_cli.errors import UsageError
from rmt_cli.flops.count import full_attention_flops, rmt_flops, segment_count
from rmt_cli.flops.shapes import (
    ModelShape,
    backbone_hf_config,
    segment_content,
    shape_from_hf_config,
    validate,
)

MEASURE_LABELS = 6  # classes of the engine's classification head in measured runs
MEASURE_MAX_FULL_TOKENS = 8192  # eager attention materialises heads x N x N scores; beyond this only RMT is run
MEASURE_MAX_TOKENS = 65536

# Tiny random models for --measure: 2 layers, d=64, 4 heads, ffn 256, vocabulary 1000. Unlike the tiny presets of
# conf/backbone (512 positions), they get as many positions as the longest input measured in one forward.
TINY_MODELS = ("tiny-bert", "tiny-opt", "tiny-gpt2")
TINY = {"layers": 2, "d_model": 64, "heads": 4, "ffn": 256, "vocab": 1000}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs that FlopCounterMode sees while running `fn` (matmul, bmm, addmm, SDPA kernels it knows: 2*m*n*k)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def tiny_hf_config(name: str, max_positions: int):
    """Random-init configs of the three families; eager attention so the counter sees the attention matmuls."""
    from transformers import BertConfig, GPT2Config, OPTConfig

    layers, d, heads, ffn, vocab = (TINY[k] for k in ("layers", "d_model", "heads", "ffn", "vocab"))
    if name == "tiny-bert":
        return BertConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=ffn, max_position_embeddings=max_positions)
    if name == "tiny-opt":
        return OPTConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                         ffn_dim=ffn, max_position_embeddings=max_positions, word_embed_proj_dim=d,
                         pad_token_id=1, bos_token_id=2, eos_token_id=2)
    if name == "tiny-gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=d, n_layer=layers, n_head=heads, n_inner=None,
                          n_positions=max_positions, bos_token_id=0, eos_token_id=0)
    raise UsageError(f"--measure builds {', '.join(TINY_MODELS)} (or --backbone NAME|PATH), got '{name}'")


def build_model(config, encoder: bool, pooler: bool = False):
    """Randomly initialised base model: BertModel-like (no LM head) for encoders, *ForCausalLM for decoders."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    config._attn_implementation = "eager"  # CPU SDPA kernels are invisible to FlopCounterMode
    torch.manual_seed(0)
    if encoder:
        try:
            model = AutoModel.from_config(config, add_pooling_layer=pooler)
        except TypeError:  # encoders without a pooler option
            model = AutoModel.from_config(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    return model.eval()


def measure_model(config, shape: ModelShape, tokens: Sequence[int], segment_length: int, memory_size: int,
                  measure_full: Callable[[int], bool] | None = None) -> list[dict]:
    """Analytic (matmul convention) vs FlopCounterMode for full attention and for RMT, batch 1.

    RMT: `rmt_cli.engine.RecurrentMemory` around the model in its layout (`[CLS] mem [SEP] content [SEP]` for
    encoders, `mem content mem` for decoders) with a classification head read once at the end. The engine reads a
    decoder's hidden states from its base model, so its LM head (vocabulary projection) is not run per segment.
    Full attention: one forward of the plain model (a decoder with its LM head) over all tokens.
    """
    import torch

    from rmt_cli.engine import RecurrentMemory

    model = build_model(config, shape.encoder, pooler=shape.pooler)
    content = segment_content(shape, segment_length, memory_size)
    generator = torch.Generator().manual_seed(0)
    special: dict[str, Any]  # cls_id and sep_id, for an encoder
    special = {"cls_id": min(101, shape.vocab - 1), "sep_id": min(102, shape.vocab - 1)} if shape.encoder else {}
    engine = RecurrentMemory(backbone=model, memory_size=memory_size, num_labels=MEASURE_LABELS, layout=shape.layout,
                             **special).eval()
    engine_shape = replace(shape, lm_head=False)
    rows = []
    for n in tokens:
        segments = segment_count(shape, n, segment_length, memory_size)
        steps = [torch.randint(0, shape.vocab, (1, content), generator=generator) for _ in range(segments)]
        rmt_measured = count_flops(partial(engine, steps))
        rmt_analytic = rmt_flops(engine_shape, n, segment_length, memory_size, "matmul", head_labels=MEASURE_LABELS)
        full_analytic = full_attention_flops(shape, n, "matmul")
        full_measured = None
        if n <= shape.max_positions and (measure_full is None or measure_full(n)):
            ids = torch.randint(0, shape.vocab, (1, n), generator=generator)
            kwargs = {} if shape.encoder else {"use_cache": False}
            full_measured = count_flops(partial(model, input_ids=ids, **kwargs))
        rows.append({
            "model": shape.name,
            "tokens": n,
            "segment_length": segment_length,
            "memory_size": memory_size,
            "segments": segments,
            "full_analytic": full_analytic,
            "full_measured": full_measured,
            "full_error": None if full_measured is None else abs(full_analytic - full_measured) / full_measured,
            "rmt_analytic": rmt_analytic,
            "rmt_measured": rmt_measured,
            "rmt_error": abs(rmt_analytic - rmt_measured) / rmt_measured,
        })
    return rows


def measure(models: str | None, tokens: Sequence[int] | None, segment_length: int, memory_size: int,
            backbone: str | None = None, conf_dir: Path | None = None) -> list[dict]:
    """--measure: tiny BERT / OPT / GPT-2 (or the --backbone config with random weights), analytic vs counted.

    Without `tokens`, each model gets exactly 1, 2 and 4 segments of input (its content per segment times k).
    """
    requested = list(tokens) if tokens else None
    if requested and max(requested) > MEASURE_MAX_TOKENS:
        raise UsageError(f"--measure runs real forwards: use --tokens up to {MEASURE_MAX_TOKENS:,}, "
                         f"got {max(requested):,}")
    if requested and min(requested) <= 0:
        raise UsageError(f"--tokens must be positive, got {min(requested)}")
    targets = []  # (config, shape)
    if models is not None or backbone is None:
        names = [n.strip().lower() for n in (models or ",".join(TINY_MODELS)).split(",") if n.strip()]
        longest = max(requested) if requested else 4 * segment_length
        positions = max(segment_length, min(longest, MEASURE_MAX_FULL_TOKENS))
        for name in names:
            if name not in TINY_MODELS:
                raise UsageError(f"--measure builds {', '.join(TINY_MODELS)} (or --backbone NAME|PATH), got '{name}'; "
                                 "the OPT shapes are counted analytically only (drop --measure)")
            config = tiny_hf_config(name, positions)
            targets.append((config, shape_from_hf_config(config, name)))
    if backbone:
        config, name = backbone_hf_config(backbone, conf_dir)
        targets.append((config, shape_from_hf_config(config, name)))
    validate([shape for _, shape in targets], requested or [1], segment_length, memory_size)
    rows = []
    for config, shape in targets:
        content = segment_content(shape, segment_length, memory_size)
        lengths = requested or [k * content for k in (1, 2, 4)]
        rows += measure_model(config, shape, lengths, segment_length, memory_size,
                              measure_full=lambda n: n <= MEASURE_MAX_FULL_TOKENS)
    return rows
