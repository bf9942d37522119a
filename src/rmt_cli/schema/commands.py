"""The whole config of each command: the run's nodes and the command's own keys. conf/train.yaml, eval.yaml, ...
name theirs first in their defaults lists, so Hydra types every value as it composes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING

from rmt_cli.schema.model import BackboneConfig, MemoryConfig, SegmentConfig, TaskConfig
from rmt_cli.schema.rules import (
    choice,
    device,
    flag,
    lengths,
    longest_input,
    optional,
    probed_input,
    setting,
    text,
    whole,
)
from rmt_cli.schema.training import CurriculumConfig, JsonlConfig, LoggerConfig, TrainerConfig


@dataclass
class RunNodes:
    """What a trained run decides (checkpoint.RUN_NODES); the checkpoint commands take these from their run."""

    backbone: BackboneConfig = MISSING
    task: TaskConfig = MISSING
    noise: Any = MISSING  # one of model.NOISE, by noise.source: conf/noise/*.yaml name theirs
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)


@dataclass
class TrainConfig(RunNodes):
    seed: int = setting(0, whole(0))
    resume: str = setting("auto", choice("auto", "force"))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    curriculum: CurriculumConfig = MISSING
    logger: LoggerConfig = field(default_factory=lambda: LoggerConfig(jsonl=JsonlConfig()))  # logger=[jsonl]


@dataclass
class PreviewConfig(RunNodes):
    segments: int = setting(1, whole(1))
    seed: int = setting(0, whole(0))


@dataclass
class CheckpointCommand(RunNodes):
    """conf/base/checkpoint_command.yaml."""

    checkpoint: str = setting(MISSING, text)
    device: str = setting("auto", device)


@dataclass
class InferenceCommand(CheckpointCommand):
    """conf/base/inference.yaml: how eval and extrapolate run the model over their batches."""

    cuda_graphs: bool = setting(True, flag)
    graph_max_rows: Optional[int] = setting(None, optional(whole(1)))
    inference_dtype: str = setting("fp32", choice("fp32", "bf16"))
    compile_blocks: bool = setting(False, flag)
    fused_blocks: bool = setting(False, flag)


@dataclass
class EvalConfig(InferenceCommand):
    samples: int = setting(200, whole(1))
    batch_size: int = setting(32, whole(1))


@dataclass
class ExtrapolateConfig(InferenceCommand):
    max_segments: int = setting(512, longest_input)
    segments: Optional[List[int]] = setting(None, lengths)
    samples: int = setting(200, whole(1))
    batch_size: int = setting(200, whole(1))


@dataclass
class AttentionConfig(CheckpointCommand):
    samples: int = setting(1, whole(1))
    layer: Optional[int] = setting(None, optional(whole(0)))
    head: Optional[int] = setting(None, optional(whole(0)))


@dataclass
class RetentionConfig(CheckpointCommand):
    max_segments: int = setting(512, probed_input)
    probes: int = setting(24, whole(1))
    samples: int = setting(100, whole(1))
    batch_size: int = setting(100, whole(1))


# Each command's schema, by its config name (and hydra.job.name).
COMMANDS: dict[str, type] = {"train": TrainConfig, "preview": PreviewConfig, "eval": EvalConfig,
                             "extrapolate": ExtrapolateConfig, "attention": AttentionConfig,
                             "retention": RetentionConfig}
