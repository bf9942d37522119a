"""`rmt flops`: forward FLOPs of full attention and of RMT, counted analytically and checked against a counter.

Counting follows Hoffmann et al. 2022 (Chinchilla), appendix F. For one forward over `seq` tokens:

    embeddings        2 * seq * vocab * d
    per layer:
      KQV projections 2 * 3 * seq * d * (key_size * heads)
      key @ query     2 * seq * seq * (key_size * heads)
      softmax         3 * heads * seq * seq
      softmax @ value 2 * seq * seq * (key_size * heads)
      final linear    2 * seq * (key_size * heads) * d
      dense block     2 * seq * (d * ffn + d * ffn)
    final logits      2 * seq * d * vocab

    forward = embeddings + layers * (attention + dense) + logits

Full attention on N tokens is one forward with seq = N. RMT on N tokens is ceil(N / content) forwards with
seq = segment_length, where content = segment_length - 2 * memory_size (decoders: mem content mem, memory read at
the start and written at the end) or segment_length - memory_size - 3 (encoders: [CLS] mem [SEP] content [SEP]), the
layouts of `rmt_cli.engine`. A last partial segment is padded to a full one. Conventions (which of the terms are counted) are listed in CONVENTIONS; docs/flops.md explains the choice.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from rmt_cli import config_dir
from rmt_cli.engine import content_length, non_content_positions
from rmt_cli.errors import RuntimeFailure, UsageError

BASE_TOKENS = 512  # the "512-token cost" every multiple is relative to (the paper's Figure 3)
DEFAULT_SEGMENT_LENGTH = 512
DEFAULT_TOKENS = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2048000)
PAPER_TOKENS = 2_048_000
PAPER_RATIOS = {"opt-125m": 295.0, "opt-175b": 29.0}  # "x295" and "x29" fewer FLOPs than full attention
PANEL_SPLIT = 32768  # Figure 3: (a) up to 32K tokens, (b) 32K to 2M tokens
FORMATS = ("table", "csv", "json")

# Measurement: real forwards under torch.utils.flop_counter.FlopCounterMode.
MEASURE_LABELS = 6  # classes of the engine's classification head in measured runs
MEASURE_MAX_FULL_TOKENS = 8192  # eager attention materialises heads x N x N scores; beyond this only RMT is run
MEASURE_MAX_TOKENS = 65536


# --------------------------------------------------------------------------------------------------------------------
# Model shapes


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs to know about a transformer."""

    name: str
    layers: int
    d_model: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    kv_heads: Optional[int] = None  # grouped-query attention (Llama); None: same as heads
    head_dim: Optional[int] = None  # None: d_model // heads
    ffn_matrices: int = 2  # 3 for gated MLPs (Llama: gate, up, down)
    embed_proj: Optional[int] = None  # OPT's word_embed_proj_dim when it differs from d_model (project_in/out)
    encoder: bool = False  # BERT family: the engine's encoder layout ([CLS] mem [SEP] content [SEP])
    lm_head: bool = True  # the model ends in a vocabulary projection (causal LMs); BertModel does not
    pooler: bool = False  # BertModel's pooler (a d x d linear on [CLS])

    @property
    def key_size(self) -> int:
        return self.head_dim if self.head_dim else self.d_model // self.heads

    @property
    def layout(self) -> str:
        return "encoder" if self.encoder else "decoder"

    @property
    def embed_width(self) -> int:
        """Width of token embeddings and of the hidden states a model returns (OPT's project_out maps back)."""
        return self.embed_proj or self.d_model


def _opt(name: str, layers: int, d_model: int, heads: int) -> ModelShape:
    # OPT paper (Zhang et al. 2022), Table 1; ffn = 4 d_model, GPT-2 BPE vocabulary padded to 50272, 2048 positions.
    return ModelShape(name=name, layers=layers, d_model=d_model, heads=heads, ffn=4 * d_model, vocab=50272,
                      max_positions=2048)


OPT_FAMILY: dict[str, ModelShape] = {
    shape.name: shape
    for shape in (
        _opt("opt-125m", 12, 768, 12),
        _opt("opt-350m", 24, 1024, 16),
        _opt("opt-1.3b", 24, 2048, 32),
        _opt("opt-2.7b", 32, 2560, 32),
        _opt("opt-6.7b", 32, 4096, 32),
        _opt("opt-13b", 40, 5120, 40),
        _opt("opt-30b", 48, 7168, 56),
        _opt("opt-66b", 64, 9216, 72),
        _opt("opt-175b", 96, 12288, 96),
    )
}

# Tiny random models for --measure: 2 layers, d=64, 4 heads, ffn 256, vocabulary 1000.
TINY_MODELS = ("tiny-bert", "tiny-opt", "tiny-gpt2")
TINY = dict(layers=2, d_model=64, heads=4, ffn=256, vocab=1000)

ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet", "deberta", "deberta-v2"}
GATED_MLP_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "olmo2"}


def _first(config: dict, keys: Sequence[str], what: str, source: str):
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    raise UsageError(f"model config of '{source}' has no {what} ({' / '.join(keys)}); "
                     "pass a Hugging Face config folder (BERT, OPT, GPT-2 or Llama)")


def shape_from_hf_config(config, name: Optional[str] = None) -> ModelShape:
    """A ModelShape from a transformers config (object or dict); key names of BERT, OPT, GPT-2 and Llama."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    model_type = str(values.get("model_type") or "")
    source = name or model_type or "backbone"
    layers = int(_first(values, ("num_hidden_layers", "n_layer"), "layer count", source))
    d_model = int(_first(values, ("hidden_size", "n_embd"), "hidden size", source))
    heads = int(_first(values, ("num_attention_heads", "n_head"), "head count", source))
    ffn = next((values[k] for k in ("intermediate_size", "ffn_dim", "n_inner") if values.get(k) is not None), None)
    ffn = int(ffn) if ffn is not None else 4 * d_model  # GPT-2: n_inner None means 4 * n_embd
    vocab = int(_first(values, ("vocab_size",), "vocabulary size", source))
    positions = int(_first(values, ("max_position_embeddings", "n_positions"), "position count", source))
    kv_heads = values.get("num_key_value_heads")
    head_dim = values.get("head_dim")
    proj = values.get("word_embed_proj_dim")
    encoder = model_type in ENCODER_TYPES
    return ModelShape(
        name=name or model_type or "backbone", layers=layers, d_model=d_model, heads=heads, ffn=ffn, vocab=vocab,
        max_positions=positions,
        kv_heads=int(kv_heads) if kv_heads and int(kv_heads) != heads else None,
        head_dim=int(head_dim) if head_dim and int(head_dim) != d_model // heads else None,
        ffn_matrices=3 if model_type in GATED_MLP_TYPES else 2,
        embed_proj=int(proj) if proj and int(proj) != d_model else None,
        encoder=encoder, lm_head=not encoder, pooler=False,
    )


def backbone_hf_config(spec: str, conf_dir: Optional[Path] = None):
    """The transformers config of `--backbone`: a conf/backbone/NAME.yaml, or a folder (or file) with config.json."""
    from transformers import AutoConfig

    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".json"):
        folder = path if path.is_dir() else path.parent
        if not (folder / "config.json").is_file():
            raise UsageError(f"--backbone folder '{spec}' has no config.json; pass a Hugging Face model folder")
        return AutoConfig.from_pretrained(str(folder)), folder.name
    yaml_path = path if path.suffix in (".yaml", ".yml") and path.is_file() else \
        (conf_dir or config_dir()) / "backbone" / f"{spec}.yaml"
    if not yaml_path.is_file():
        known = sorted(p.stem for p in ((conf_dir or config_dir()) / "backbone").glob("*.yaml"))
        raise UsageError(f"unknown backbone '{spec}': use one of conf/backbone ({', '.join(known) or 'none found'}) "
                         "or a folder with config.json")
    from omegaconf import OmegaConf

    from rmt_cli.backbones import backbone_config, inline_config, resolve_path

    cfg = OmegaConf.load(yaml_path)
    name = yaml_path.stem
    if cfg.get("config"):
        return inline_config(cfg), name
    if OmegaConf.is_missing(cfg, "name_or_path"):
        raise UsageError(f"backbone '{name}' has no name_or_path set; pass the model folder itself: --backbone PATH")
    folder = Path(resolve_path(cfg)).expanduser()
    if cfg.get("gguf_file") and (folder / str(cfg.gguf_file)).is_file():
        return backbone_config(cfg), name
    if not (folder / "config.json").is_file():
        raise UsageError(f"backbone '{name}' points at '{folder}', which is not a local folder with config.json; "
                         "set its name_or_path to a downloaded model folder or pass --backbone PATH")
    return AutoConfig.from_pretrained(str(folder)), name


def backbone_shape(spec: str, conf_dir: Optional[Path] = None) -> ModelShape:
    config, name = backbone_hf_config(spec, conf_dir)
    return shape_from_hf_config(config, name)


def resolve_models(names: Optional[str], backbone: Optional[str] = None,
                   conf_dir: Optional[Path] = None) -> list[ModelShape]:
    """--models (comma-separated OPT names, default all unless --backbone is given) and --backbone."""
    shapes: list[ModelShape] = []
    if names is not None or backbone is None:
        wanted = [n.strip().lower() for n in (names or ",".join(OPT_FAMILY)).split(",") if n.strip()]
        if not wanted or wanted == ["all"]:
            wanted = list(OPT_FAMILY)
        for name in wanted:
            name = name.removeprefix("facebook/")
            if name not in OPT_FAMILY:
                raise UsageError(f"unknown model '{name}': known models are {', '.join(OPT_FAMILY)} "
                                 "(or use --backbone NAME|PATH)")
            shapes.append(OPT_FAMILY[name])
    if backbone:
        shapes.append(backbone_shape(backbone, conf_dir))
    return shapes


def parse_tokens(text: Optional[str], default: Sequence[int] = DEFAULT_TOKENS) -> list[int]:
    """--tokens: comma-separated positive integers ("512,2048000" or "2_048_000")."""
    if text is None:
        return list(default)
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--tokens takes comma-separated positive integers, got '{item}'") from None
        if value <= 0:
            raise UsageError(f"--tokens must be positive, got {value}; e.g. --tokens 512,4096,2048000")
        values.append(value)
    if not values:
        raise UsageError("--tokens is empty; e.g. --tokens 512,4096,2048000")
    return values


def segment_content(shape: ModelShape, segment_length: int, memory_size: int) -> int:
    """Input tokens one RMT segment holds: segment_length less memory read and write slots (decoders) or less
    memory and [CLS]/[SEP] (encoders), as the engine lays out a segment."""
    return content_length(segment_length, memory_size, shape.layout)


def validate(shapes: Iterable[ModelShape], tokens: Sequence[int], segment_length: int, memory_size: int) -> None:
    if segment_length <= 0:
        raise UsageError(f"--segment-length must be positive, got {segment_length}")
    if memory_size < 0:
        raise UsageError(f"--memory-size must be 0 or more, got {memory_size}")
    if any(t <= 0 for t in tokens):
        raise UsageError(f"--tokens must be positive, got {min(tokens)}; e.g. --tokens 512,4096,2048000")
    for shape in shapes:
        if segment_length > shape.max_positions:
            raise UsageError(f"--segment-length {segment_length} exceeds the {shape.max_positions} positions of "
                             f"{shape.name}; use --segment-length {shape.max_positions} or less")
        if memory_size >= segment_length:
            raise UsageError(f"--memory-size {memory_size} must be smaller than --segment-length {segment_length} "
                             "(memory takes positions of each segment)")
        if segment_content(shape, segment_length, memory_size) < 1:
            raise UsageError(f"--memory-size {memory_size} leaves no room for input in a {segment_length}-token "
                             f"segment of {shape.name} ({non_content_positions(memory_size, shape.layout)} positions "
                             "go to memory and special tokens); lower --memory-size")


# --------------------------------------------------------------------------------------------------------------------
# Analytic counting


@dataclass(frozen=True)
class Convention:
    """Which of the Chinchilla terms a count includes."""

    name: str
    embeddings: bool  # the embedding "matmul" 2 * seq * vocab * d (in practice an index lookup)
    softmax: bool  # 3 * heads * seq * seq
    logits: str  # "always": one vocabulary projection; "lm_head": only if the model has one; "never"
    description: str


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("paper", embeddings=False, softmax=True, logits="always",
                   description="Chinchilla terms with one vocabulary projection (the logits), no embedding term: "
                               "reproduces the paper's x295 / x29"),
        Convention("chinchilla", embeddings=True, softmax=True, logits="always",
                   description="all Chinchilla appendix F terms (embeddings and logits)"),
        Convention("layers", embeddings=False, softmax=True, logits="never",
                   description="transformer layers only, no vocabulary terms"),
        Convention("matmul", embeddings=False, softmax=False, logits="lm_head",
                   description="matrix multiplications only, as torch.utils.flop_counter.FlopCounterMode counts"),
    )
}


def convention(name: Optional[str]) -> Convention:
    key = (name or "paper").strip().lower()
    if key not in CONVENTIONS:
        raise UsageError(f"--convention must be one of {', '.join(CONVENTIONS)}, got '{name}'")
    return CONVENTIONS[key]


def forward_terms(shape: ModelShape, seq: int, conv: Convention | str = "paper") -> dict[str, int]:
    """FLOPs of one forward over `seq` tokens (batch 1), term by term (layer terms already times `layers`)."""
    conv = convention(conv) if isinstance(conv, str) else conv
    d, L = shape.d_model, shape.layers
    q_width = shape.key_size * shape.heads  # key_size * heads
    kv_width = shape.key_size * (shape.kv_heads or shape.heads)
    width = shape.embed_proj or d  # dimension of the vocabulary projections
    matmul_only = conv.name == "matmul"
    terms = {
        "embeddings": 2 * seq * shape.vocab * width if conv.embeddings else 0,
        "kqv": L * 2 * seq * d * (q_width + 2 * kv_width),  # = 2 * 3 * seq * d * (key_size * heads)
        "logits_qk": L * 2 * seq * seq * q_width,
        "softmax": L * 3 * shape.heads * seq * seq if conv.softmax else 0,
        "softmax_v": L * 2 * seq * seq * q_width,
        "attn_out": L * 2 * seq * q_width * d,
        "dense": L * 2 * seq * shape.ffn_matrices * d * shape.ffn,
        "vocab_logits": 0,
        # Real matmuls outside the Chinchilla table, present only in some architectures.
        "embed_proj": 2 * 2 * seq * width * d if shape.embed_proj else 0,  # OPT project_in + project_out
        "pooler": 2 * d * d if (matmul_only and shape.pooler) else 0,  # BertModel pooler on [CLS]
    }
    if conv.logits == "always" or (conv.logits == "lm_head" and shape.lm_head):
        terms["vocab_logits"] = 2 * seq * width * shape.vocab
    return terms


def forward_flops(shape: ModelShape, seq: int, conv: Convention | str = "paper") -> int:
    return sum(forward_terms(shape, seq, conv).values())


def segment_count(shape: ModelShape, tokens: int, segment_length: int, memory_size: int) -> int:
    return math.ceil(tokens / segment_content(shape, segment_length, memory_size))


def full_attention_flops(shape: ModelShape, tokens: int, conv: Convention | str = "paper") -> int:
    """One forward over all `tokens` (attention is quadratic in `tokens`)."""
    return forward_flops(shape, tokens, conv)


def rmt_flops(shape: ModelShape, tokens: int, segment_length: int = DEFAULT_SEGMENT_LENGTH, memory_size: int = 0,
              conv: Convention | str = "paper", head_labels: int = 0) -> int:
    """ceil(tokens / content) forwards over one segment each; plus a classification head on the last segment."""
    segments = segment_count(shape, tokens, segment_length, memory_size)
    return segments * forward_flops(shape, segment_length, conv) + 2 * shape.embed_width * head_labels


def compare(shapes: Sequence[ModelShape], tokens: Sequence[int], segment_length: int = DEFAULT_SEGMENT_LENGTH,
            memory_size: int = 0, conv: Convention | str = "paper") -> list[dict]:
    """One row per (model, length): full attention vs RMT, their ratio and multiples of the 512-token cost."""
    conv = convention(conv) if isinstance(conv, str) else conv
    validate(shapes, tokens, segment_length, memory_size)
    rows = []
    for shape in shapes:
        base = forward_flops(shape, BASE_TOKENS, conv)
        for n in tokens:
            full = full_attention_flops(shape, n, conv)
            rmt = rmt_flops(shape, n, segment_length, memory_size, conv)
            rows.append({
                "model": shape.name,
                "tokens": n,
                "segment_length": segment_length,
                "memory_size": memory_size,
                "segments": segment_count(shape, n, segment_length, memory_size),
                "full_flops": full,
                "rmt_flops": rmt,
                "ratio": full / rmt,
                "full_multiple": full / base,
                "rmt_multiple": rmt / base,
                "convention": conv.name,
            })
    return rows


def paper_check(tokens: int = PAPER_TOKENS, segment_length: int = DEFAULT_SEGMENT_LENGTH) -> list[dict]:
    """The headline ratios under every convention, next to the paper's x295 (OPT-125M) and x29 (OPT-175B)."""
    rows = []
    for conv in ("paper", "chinchilla", "layers", "matmul"):
        for name, target in PAPER_RATIOS.items():
            shape = OPT_FAMILY[name]
            ratio = full_attention_flops(shape, tokens, conv) / rmt_flops(shape, tokens, segment_length, 0, conv)
            rows.append({"convention": conv, "model": name, "tokens": tokens, "ratio": ratio, "paper": target,
                         "deviation": ratio / target - 1})
    return rows


# --------------------------------------------------------------------------------------------------------------------
# Output: table, CSV, JSON, figure

COLUMNS = ("model", "tokens", "segment_length", "memory_size", "segments", "full_flops", "rmt_flops", "ratio",
           "full_multiple", "rmt_multiple", "convention")


def to_csv(rows: Sequence[dict], columns: Optional[Sequence[str]] = None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or (rows[0].keys() if rows else COLUMNS)),
                            lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_json(rows: Sequence[dict]) -> str:
    return json.dumps(list(rows), indent=2)


def _sci(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.3e}"


def _times(value: float) -> str:
    return f"×{value:,.1f}" if value < 1000 else f"×{value:,.0f}"


def render_table(rows: Sequence[dict], segment_length: int, memory_size: int, conv: str):
    from rich.table import Table

    table = Table(title=f"Forward FLOPs: full attention vs RMT (segment {segment_length}, memory {memory_size}, "
                        f"convention '{conv}')",
                  caption=f"multiples are of one full-attention forward over {BASE_TOKENS} tokens")
    for header in ("model", "tokens", "segments", "full attention", "RMT", "full ÷ RMT", f"full ×{BASE_TOKENS}",
                   f"RMT ×{BASE_TOKENS}"):
        table.add_column(header, justify="left" if header == "model" else "right")
    previous = None
    for row in rows:
        if previous is not None and row["model"] != previous:
            table.add_section()
        previous = row["model"]
        table.add_row(row["model"], f"{row['tokens']:,}", f"{row['segments']:,}", _sci(row["full_flops"]),
                      _sci(row["rmt_flops"]), f"{row['ratio']:,.2f}", _times(row["full_multiple"]),
                      _times(row["rmt_multiple"]))
    return table


def curve_lengths(tokens: Sequence[int]) -> list[int]:
    """Where the figure's curves are drawn: from 512 tokens, doubling, up to the longest requested length, and
    through every requested length."""
    top, grid, n = max(tokens), [], BASE_TOKENS
    while n < top:
        grid.append(n)
        n *= 2
    return sorted({*grid, top, *tokens})


def plot_figure(rows: Sequence[dict], path: Path, curves: Optional[Sequence[dict]] = None) -> Path:
    """Figure 3 of the paper: FLOPs as a multiple of the 512-token cost vs input tokens, log-log.

    `curves` (rows at `curve_lengths`, default `rows`) are drawn as lines, the requested `rows` as markers. Inputs
    longer than 32K tokens get a second panel from 32K up, as in the paper.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = rows if curves is None else curves
    top = max(row["tokens"] for row in curves)
    fig = Figure(figsize=(13 if top > PANEL_SPLIT else 8, 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    panels = [(lambda n: n <= PANEL_SPLIT, f"(a) up to {min(top, PANEL_SPLIT):,} tokens")]
    if top > PANEL_SPLIT:
        panels.append((lambda n: n >= PANEL_SPLIT, f"(b) {PANEL_SPLIT:,} to {top:,} tokens"))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    models = list(dict.fromkeys(row["model"] for row in curves))
    for ax, (keep, title) in zip(axes, panels):
        for i, model in enumerate(models):
            color = f"C{i % 10}"
            for table, style in ((curves, "line"), (rows, "marks")):
                points = sorted((r["tokens"], r["full_multiple"], r["rmt_multiple"]) for r in table
                                if r["model"] == model and keep(r["tokens"]))
                if not points:
                    continue
                xs, full, rmt = zip(*points)
                if style == "line":
                    ax.plot(xs, full, color=color, linewidth=1.6, label=f"{model} full attention")
                    ax.plot(xs, rmt, color=color, linewidth=1.2, linestyle=":", label=f"{model} RMT")
                else:
                    ax.plot(xs, full, color=color, marker="o", markersize=6, linestyle="none")
                    ax.plot(xs, rmt, color=color, marker="s", markersize=6, linestyle="none")
        lengths = sorted({row["tokens"] for row in curves if keep(row["tokens"])})
        ax.plot(lengths, [(n / BASE_TOKENS) ** 2 for n in lengths], color="black", linestyle="--", linewidth=1,
                label="quadratic growth")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("input tokens (markers: requested lengths)")
        ax.set_ylabel(f"FLOPs, multiple of the {BASE_TOKENS}-token cost")
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7)
    fig.suptitle("Forward FLOPs of full attention vs RMT (log-log)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def default_out_dir() -> Path:
    return Path("outputs") / "flops" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def check_format(fmt: str) -> str:
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    return fmt


# --------------------------------------------------------------------------------------------------------------------
# Measurement with torch.utils.flop_counter.FlopCounterMode


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
                  measure_full: Optional[Callable[[int], bool]] = None) -> list[dict]:
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
    special = {"cls_id": min(101, shape.vocab - 1), "sep_id": min(102, shape.vocab - 1)} if shape.encoder else {}
    engine = RecurrentMemory(backbone=model, memory_size=memory_size, num_labels=MEASURE_LABELS, layout=shape.layout,
                             **special).eval()
    engine_shape = replace(shape, lm_head=False)
    rows = []
    for n in tokens:
        segments = segment_count(shape, n, segment_length, memory_size)
        steps = [torch.randint(0, shape.vocab, (1, content), generator=generator) for _ in range(segments)]
        rmt_measured = count_flops(lambda: engine(steps))
        rmt_analytic = rmt_flops(engine_shape, n, segment_length, memory_size, "matmul", head_labels=MEASURE_LABELS)
        full_analytic = full_attention_flops(shape, n, "matmul")
        full_measured = None
        if n <= shape.max_positions and (measure_full is None or measure_full(n)):
            ids = torch.randint(0, shape.vocab, (1, n), generator=generator)
            kwargs = {} if shape.encoder else {"use_cache": False}
            full_measured = count_flops(lambda: model(input_ids=ids, **kwargs))
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


def measure(models: Optional[str], tokens: Optional[Sequence[int]], segment_length: int, memory_size: int,
            backbone: Optional[str] = None, conf_dir: Optional[Path] = None) -> list[dict]:
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


def render_measure_table(rows: Sequence[dict]):
    from rich.table import Table

    table = Table(title="Analytic (matmul convention) vs FlopCounterMode, batch 1",
                  caption="full: one forward over all tokens (— where longer than the model's positions or "
                          f"{MEASURE_MAX_FULL_TOKENS:,} tokens); RMT: one forward per segment through the engine, "
                          f"with a {MEASURE_LABELS}-class head")
    for header in ("model", "tokens", "segments", "full analytic", "full measured", "error", "RMT analytic",
                   "RMT measured", "error"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in rows:
        full_error = "—" if row["full_error"] is None else f"{100 * row['full_error']:.2f}%"
        table.add_row(row["model"], f"{row['tokens']:,}", f"{row['segments']:,}", _sci(row["full_analytic"]),
                      _sci(row["full_measured"]), full_error, _sci(row["rmt_analytic"]),
                      _sci(row["rmt_measured"]), f"{100 * row['rmt_error']:.2f}%")
    return table


# --------------------------------------------------------------------------------------------------------------------
# The command


def run_command(models: Optional[str] = None, tokens: Optional[str] = None,
                segment_length: int = DEFAULT_SEGMENT_LENGTH, memory_size: int = 0, backbone: Optional[str] = None,
                fmt: str = "table", out: Optional[Path] = None, measure_flops: bool = False,
                convention_name: Optional[str] = None, echo: Callable[[str], None] = print,
                conf_dir: Optional[Path] = None) -> list[dict]:
    """Everything `rmt flops` does: count (or measure), print in `fmt`, write CSV (+ PNG) into the output folder.

    Files are written for `--format table`, and for csv/json only when `out` is given, so that piped output does not
    leave folders behind. Status lines go to stderr; stdout carries only the table, CSV or JSON.
    """
    fmt = check_format(fmt)
    if out is not None:
        check_out_folder(Path(out))
    lengths = parse_tokens(tokens) if tokens is not None else None
    if measure_flops:
        if convention_name and convention(convention_name).name != "matmul":
            raise UsageError("--measure compares against the matmul convention; drop --convention")
        rows, curves = measure(models, lengths, segment_length, memory_size, backbone, conf_dir), None
    else:
        conv = convention(convention_name)
        shapes = resolve_models(models, backbone, conf_dir)
        rows = compare(shapes, lengths or list(DEFAULT_TOKENS), segment_length, memory_size, conv)
        curves = compare(shapes, curve_lengths([row["tokens"] for row in rows]), segment_length, memory_size, conv)
    if fmt == "json":
        echo(to_json(rows))
    elif fmt == "csv":
        echo(to_csv(rows).rstrip("\n"))
    else:
        from rich.console import Console

        console = Console(width=max(140, Console().width))
        table = render_measure_table(rows) if measure_flops else render_table(
            rows, segment_length, memory_size, convention(convention_name).name)
        console.print(table)
    if fmt == "table" or out is not None:
        write_outputs(rows, Path(out) if out is not None else default_out_dir(), plot=not measure_flops,
                      curves=curves)
    return rows


def check_out_folder(out: Path) -> None:
    """--out must be a folder this process can create or write to; checked before anything is computed."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is a file, not a folder; give a folder for flops.csv and flops.png")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot write to {existing}; choose a folder you can write to")


def write_outputs(rows: Sequence[dict], out: Path, plot: bool = True,
                  curves: Optional[Sequence[dict]] = None) -> list[Path]:
    import sys

    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / ("flops.csv" if plot else "flops_measured.csv")
        csv_path.write_text(to_csv(rows))
        written.append(csv_path)
        if plot:
            written.append(plot_figure(rows, out / "flops.png", curves))
    except OSError as error:
        raise RuntimeFailure(f"cannot write {error.filename or out} ({error.strerror}); "
                             "choose another folder with --out DIR") from None
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return written


__all__ = [
    "BASE_TOKENS", "CONVENTIONS", "DEFAULT_TOKENS", "OPT_FAMILY", "PAPER_RATIOS", "PAPER_TOKENS", "TINY_MODELS",
    "Convention", "ModelShape", "backbone_shape", "compare", "convention", "count_flops", "curve_lengths",
    "forward_flops", "forward_terms", "full_attention_flops", "measure", "measure_model", "paper_check", "parse_tokens",
    "plot_figure", "resolve_models", "rmt_flops", "run_command", "segment_content", "segment_count",
    "shape_from_hf_config", "tiny_hf_config", "to_csv", "to_json", "validate", "write_outputs",
]
