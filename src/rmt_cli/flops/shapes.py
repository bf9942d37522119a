"""What a FLOP count needs to know about a model: its geometry (`ModelShape`), where that comes from (the OPT table,
a transformers config, a `--backbone` preset or folder), and whether a segment of that model can hold the request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rmt_cli import config_dir
from rmt_cli.engine import content_length, non_content_positions
from rmt_cli.errors import UsageError


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
    kv_heads: int | None = None  # grouped-query attention (Llama); None: same as heads
    head_dim: int | None = None  # None: d_model // heads
    ffn_matrices: int = 2  # 3 for gated MLPs (Llama: gate, up, down)
    embed_proj: int | None = None  # OPT's word_embed_proj_dim when it differs from d_model (project_in/out)
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

ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet", "deberta", "deberta-v2"}
GATED_MLP_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "olmo2"}


def _first(config: dict, keys: Sequence[str], what: str, source: str):
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    raise UsageError(f"model config of '{source}' has no {what} ({' / '.join(keys)}); "
                     "pass a Hugging Face config folder (BERT, OPT, GPT-2 or Llama)")


def shape_from_hf_config(config, name: str | None = None) -> ModelShape:
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


def backbone_hf_config(spec: str, conf_dir: Path | None = None):
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
    from omegaconf.errors import OmegaConfBaseException

    from rmt_cli.backbones import backbone_config, inline_config, resolve_path
    from rmt_cli.schema import BackboneConfig, typed_node

    name, preset = yaml_path.stem, OmegaConf.load(yaml_path)
    try:
        cfg = typed_node(BackboneConfig, preset)
    except OmegaConfBaseException as error:
        raise UsageError(f"backbone '{name}' ({yaml_path}) is no backbone config: "
                         f"{str(error).strip().splitlines()[0]}") from None
    if cfg.config is not None:
        return inline_config(cfg), name
    if OmegaConf.is_missing(preset, "name_or_path"):  # hf.yaml: a value the command line gives
        raise UsageError(f"backbone '{name}' has no name_or_path set; pass the model folder itself: --backbone PATH")
    folder = Path(resolve_path(cfg)).expanduser()
    if cfg.gguf_file is not None and (folder / cfg.gguf_file).is_file():
        return backbone_config(cfg), name
    if not (folder / "config.json").is_file():
        raise UsageError(f"backbone '{name}' points at '{folder}', which is not a local folder with config.json; "
                         "set its name_or_path to a downloaded model folder or pass --backbone PATH")
    return AutoConfig.from_pretrained(str(folder)), name


def backbone_shape(spec: str, conf_dir: Path | None = None) -> ModelShape:
    config, name = backbone_hf_config(spec, conf_dir)
    return shape_from_hf_config(config, name)


def resolve_models(names: str | None, backbone: str | None = None,
                   conf_dir: Path | None = None) -> list[ModelShape]:
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


def segment_content(shape: ModelShape, segment_length: int, memory_size: int) -> int:
    """Input tokens one RMT segment holds: segment_length less memory read and write slots (decoders) or less
    memory and [CLS]/[SEP] (encoders), as the engine lays out a segment."""
    return content_length(segment_length, memory_size, shape.layout)


def validate(shapes: Iterable[ModelShape], tokens: Sequence[int], segment_length: int, memory_size: int) -> None:
    """Usage errors for lengths and sizes no count can be made of: non-positive lengths, a segment longer than a
    model's positions, or memory that leaves a segment no room for input."""
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
