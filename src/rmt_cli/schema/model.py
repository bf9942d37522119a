"""The config nodes a trained run decides (checkpoint.RUN_NODES): backbone, task, noise, memory and segment.

Defaults are what a key means when a config leaves it out: a preset that does not need it, or the config.yaml of a
run saved before the key existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from rmt_cli.schema.rules import (
    choice,
    flag,
    generator,
    head,
    layout,
    number,
    optional,
    setting,
    share,
    text,
    texts,
    whole,
)

# Attention implementations built into transformers; a hub kernel name would download and run code.
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class TokenizerConfig:
    """`backbone.tokenizer`: where a tiny random backbone (one with an inline `config`) takes its tokenizer from."""

    name_or_path: Optional[str] = setting(None, optional(text))
    offline_package: Optional[str] = setting(None, optional(text))
    offline_folder: Optional[str] = setting(None, optional(text))
    gguf_file: Optional[str] = setting(None, optional(text))
    trust_remote_code: bool = setting(False, flag)


@dataclass
class BackboneConfig:
    """`backbone`: the pretrained (or tiny random) model and where its weights come from (backbones.py)."""

    name: str = setting(MISSING, text)
    layout: str = setting("encoder", layout)
    name_or_path: Optional[str] = setting(None, optional(text))
    offline_package: Optional[str] = setting(None, optional(text))
    offline_folder: Optional[str] = setting(None, optional(text))
    gguf_file: Optional[str] = setting(None, optional(text))
    attn_implementation: Optional[str] = setting("sdpa", optional(choice(*ATTENTION)))
    # with sdpa: no attention mask built at all, as rmt never masks a backbone (unmasked_attention.py)
    skip_attention_masks: bool = setting(True, flag)
    # MPNet: its attention on SDPA, the relative position bias as the additive mask (relative_bias_sdpa.py)
    relative_bias_sdpa: bool = setting(True, flag)
    trust_remote_code: bool = setting(False, flag)
    config: Optional[Dict[str, Any]] = None  # a transformers config, checked by transformers itself
    tokenizer: Optional[TokenizerConfig] = None


@dataclass
class TaskConfig:
    """`task`: what the facts and the question are, and how the answer is read."""

    name: str = setting(MISSING, text)
    source: str = setting("generator", choice("generator", "babilong"))
    split: Optional[str] = setting(None, optional(text))  # BABILong's task (source babilong)
    length: Optional[str] = setting(None, optional(text))  # BABILong's length config (source babilong)
    generator: Optional[str] = setting(MISSING, generator)
    fact_position: str = setting(MISSING, choice("start", "random"))
    segments: Optional[int] = setting(None, optional(whole(1)))
    eval_seed: int = setting(0, whole(0))
    head: str = setting("classify", head)
    facts_file: Optional[str] = setting(None, optional(text))


@dataclass
class MemoryConfig:
    size: int = setting(10, whole(1))
    rescale_writes: bool = setting(False, flag)  # written memory RMS-normalised, times a learned scale (engine.py)
    gated_writes: bool = setting(False, flag)  # each memory feature keeps a learned share of its old value (engine.py)
    gate_start: float = setting(0.88, share)  # with gated_writes: every share's value before training
    every_layer: bool = setting(False, flag)  # encoders: m memory vectors per transformer block (layer_memory.py)
    associative: bool = setting(False, flag)  # encoders: a key-value matrix per block too (associative_memory.py)


@dataclass
class SegmentConfig:
    length: int = setting(128, whole(1))


@dataclass
class TextNoise:
    """Keys of every noise source read from text; `source` names it. Training noise can be generated from the
    training text (corpus/generated.py)."""

    source: str = MISSING
    generated_training_tokens: int = setting(0, whole(0))  # tokens generated and added to the training noise
    generated_context: int = setting(3, whole(1))  # tokens of context that choose each next generated token


@dataclass
class AustenNoise(TextNoise):
    """noise=austen."""

    source: str = "austen"
    path: Optional[str] = setting(None, optional(text))
    eval_documents: List[str] = setting(["northangerabbey", "persuasion"], texts)
    extra_training: List[str] = setting([], texts)  # .txt files or folders added to the training noise only


@dataclass
class FilesNoise(TextNoise):
    """noise=files."""

    source: str = "files"
    paths: List[str] = setting([], texts)
    eval_fraction: float = setting(0.1, number(0, 1))


@dataclass
class HubNoise(TextNoise):
    """noise.source=hub (noise=pg19)."""

    source: str = "hub"
    dataset: str = setting(MISSING, text)
    text_field: str = setting("text", text)
    train_split: str = setting("train", text)
    eval_split: str = setting("test", text)
    max_documents: Optional[int] = setting(None, optional(whole(1)))


@dataclass
class SyntheticNoise:
    """noise=synthetic."""

    source: str = "synthetic"
    tokens: int = setting(200_000, whole(1))
    seed: int = setting(0, whole(0))


# The schema of a noise node, by its `source`; conf/noise/*.yaml name theirs in their defaults lists.
NOISE = {"austen": AustenNoise, "files": FilesNoise, "hub": HubNoise, "synthetic": SyntheticNoise}
