"""The config nodes of `rmt train` alone: trainer, curriculum (and its stages) and logger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from omegaconf import MISSING

from rmt_cli.schema.rules import (
    choice,
    device,
    flag,
    number,
    optional,
    positive,
    scheduler,
    setting,
    share_below_one,
    stage_segments,
    text,
    whole,
)


@dataclass
class TrainerConfig:
    """`trainer` (conf/trainer/default.yaml says what each key does)."""

    batch_size: int = setting(16, whole(1))
    eval_batch_size: int = setting(32, whole(1))
    lr: float = setting(5.0e-5, positive)
    memory_lr_scale: float = setting(1.0, positive)  # the memory's own parameters learn at this multiple of lr
    memory_map: float = setting(0.0, number(0))  # weight of the memory-map objective (memory_map.py); 0: off
    memory_map_target: str = setting("relations", choice("relations", "ends", "answer"))  # what it asks for
    memory_map_hidden: int = setting(0, whole(0))  # width of its read's hidden layer; 0: a linear read
    weight_decay: float = setting(1.0e-3, number(0))
    scheduler: str = setting("linear", scheduler)
    warmup_ratio: float = setting(0.1, number(0, 1))
    grad_clip: float = setting(1.0, positive)
    ema_decay: Optional[float] = setting(None, optional(number(0, 1)))  # validate an average of the weights
    skip_spikes: Optional[float] = setting(None, optional(positive))  # skip a step whose gradient norm is this many
                                                                      # times the stage's recent median (null: never)
    revert_drop: Optional[float] = setting(None, optional(number(0, 1)))  # a validation this far below the stage's
                                                                        # best sends the weights back to that best
    bptt_segments: Optional[int] = setting(None, optional(whole(1)))
    prefix_dtype: str = setting("fp32", choice("fp32", "bf16"))  # the segments before the BPTT window
    compute_dtype: str = setting("fp32", choice("fp32", "bf16"))  # the weights a training step runs on
    checkpoint_segments: bool = setting(False, flag)
    reentrant_checkpoints: bool = setting(False, flag)  # checkpoint_segments' reentrant style (engine.py)
    fused_adamw: bool = setting(True, flag)
    compile_blocks: bool = setting(False, flag)  # torch.compile each transformer block
    fused_norms: bool = setting(False, flag)  # Llama-family RMSNorm in fused kernels (fused_norms.py)
    fused_blocks: bool = setting(False, flag)  # BERT-family blocks with stacked projections (fused_blocks.py)
    eval_every: int = setting(25, whole(1))
    val_samples: int = setting(64, whole(1))
    log_every: int = setting(5, whole(1))
    device: str = setting("auto", device)
    devices: int = setting(1, whole(1))
    time_limit_minutes: Optional[float] = setting(None, optional(positive))
    fit_time_limit: bool = setting(False, flag)  # the last stage's schedule cut to the time left (train.py)
    keep_last: int = setting(2, whole(1, " (resume checkpoints to keep)"))
    init_from: Optional[str] = setting(None, optional(text))  # a run or checkpoint folder whose weights a new run
                                                              # starts from


@dataclass
class StageConfig:
    """One stage of the curriculum; a key left null takes the trainer's (or the curriculum's) value."""

    segments: Any = setting(MISSING, stage_segments)  # a count, or a range [lo, hi] drawn from per sample
    steps: int = setting(MISSING, whole(1))
    lr: Optional[float] = setting(None, optional(positive))
    warmup_ratio: Optional[float] = setting(None, optional(number(0, 1)))
    bptt_segments: Optional[int] = setting(None, optional(whole(1)))
    checkpoint_segments: Optional[bool] = setting(None, optional(flag))  # null: the trainer's
    ema_decay: Optional[float] = setting(None, optional(number(0, 1)))  # null: the trainer's
    revert_drop: Optional[float] = setting(None, optional(number(0, 1)))  # null: the trainer's
    facts_in_last: Optional[int] = setting(None, optional(whole(1)))  # facts in the last k segments; null: anywhere
    facts_before_question: bool = setting(False, flag)  # no fact in the question's segment (inputs of 2+ segments)
    val_segments: Optional[int] = setting(None, optional(whole(1)))  # null: the stage's longest training length
    val_samples: Optional[int] = setting(None, optional(whole(1)))
    eval_every: Optional[int] = setting(None, optional(whole(1)))
    advance_at: Optional[float] = setting(None, optional(number(0)))
    confuser_share: float = setting(0.0, number(0, 1))
    confuser_answers: str = setting("natural", choice("natural", "even"))  # confusers drawn alike, or by answer
    multi_fact_share: float = setting(0.0, number(0, 1))  # stories whose question names someone 2+ facts name
    carry_memory: float = setting(0.0, number(0, 1))  # batch rows whose memory carries on from step to step
    noise_primed: float = setting(0.0, number(0, 1))  # batch rows that start from a memory that has read only noise
    primed_segments: Any = setting(4, stage_segments)  # noise segments each primed memory reads a step, or [lo, hi]:
                                                       # growing from lo to hi over the stage
    chain_share: float = setting(0.0, share_below_one)  # batch rows that read one long input over several steps
    chain_steps: Any = setting(16, stage_segments)  # the most steps of one chained input, or [lo, hi]: growing
                                                    # from lo to hi over the stage
    generated_share: Optional[float] = setting(None, optional(number(0, 1)))  # noise windows from generated text;
                                                                              # null: the curriculum's
    segment_length: Optional[int] = setting(None, optional(whole(1)))  # positions of this stage's segments
                                                                     # (shorter: less noise); null: segment.length
    batch_size: Optional[int] = setting(None, optional(whole(1)))  # samples per optimizer step; null: the trainer's
    lengths_per: str = setting("sample", choice("sample", "batch"))  # a range's count drawn per sample, or once per
                                                                     # batch for all its rows


@dataclass
class CurriculumConfig:
    """`curriculum`: its stages (checked one by one in config_check, which names each by its number)."""

    advance_at: Optional[float] = setting(None, optional(number(0)))  # null: never leave a stage early
    # share of training noise windows drawn from generated text (noise.generated_training_tokens); null: windows
    # drawn from all training noise alike, so in proportion to its tokens
    generated_share: Optional[float] = setting(None, optional(number(0, 1)))
    stages: List[StageConfig] = MISSING


@dataclass
class JsonlConfig:
    """logger=jsonl: metrics.jsonl, which is written whichever loggers are chosen."""


@dataclass
class TensorBoardConfig:
    dir: str = setting("tensorboard", text)


@dataclass
class WandbConfig:
    mode: str = setting("offline", choice("offline", "online"))
    project: str = setting("rmt", text)
    entity: Optional[str] = setting(None, optional(text))


@dataclass
class LoggerConfig:
    """`logger`: the backends chosen (logger=[jsonl,tensorboard]) hold their settings, the others are null."""

    jsonl: Optional[JsonlConfig] = None
    tensorboard: Optional[TensorBoardConfig] = None
    wandb: Optional[WandbConfig] = None
