"""The typed config schema: a dataclass for every config node the commands read, with each key's type, default and
check (its range or allowed values).

    rules      the checks, each raising one line that names the key, the value and what it takes
    model      backbone, task, noise (one schema per source), memory, segment: what a trained run decides
    training   trainer, curriculum and its stages, logger
    commands   each command's whole config

`register()` puts them in Hydra's ConfigStore under `schema/`: conf/train.yaml, eval.yaml, ... name their command's
schema first in their defaults list (`- schema/train@_here_`) and conf/noise/*.yaml that of their source, so Hydra
types every value as it composes. config_check.py then applies the checks; config_errors.py words what OmegaConf
refuses.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from rmt_cli.schema.commands import (
    COMMANDS,
    AttentionConfig,
    EvalConfig,
    ExtrapolateConfig,
    InferenceCommand,
    PreviewConfig,
    RetentionConfig,
    TrainConfig,
)
from rmt_cli.schema.model import NOISE, BackboneConfig, TaskConfig, TokenizerConfig
from rmt_cli.schema.training import CurriculumConfig, LoggerConfig, StageConfig, TrainerConfig

__all__ = [
    "COMMANDS", "NOISE", "AttentionConfig", "BackboneConfig", "CurriculumConfig", "EvalConfig", "ExtrapolateConfig",
    "InferenceCommand", "LoggerConfig", "PreviewConfig", "RetentionConfig", "StageConfig", "TaskConfig",
    "TokenizerConfig", "TrainConfig", "TrainerConfig", "register", "typed_config", "typed_node",
]


@cache
def register() -> None:
    """Store the schemas in Hydra's ConfigStore, where conf/'s defaults lists find them."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for command, schema in COMMANDS.items():
        store.store(group="schema", name=command, node=schema)
    for source, schema in NOISE.items():
        store.store(group="schema/noise", name=source, node=schema)


def typed_node(schema: type, values: Any) -> DictConfig:
    """`values` (a mapping or a DictConfig) as a node of `schema`: typed, with the schema's defaults for the keys it
    leaves out. Raises OmegaConf's errors (config_errors.py words them)."""
    return OmegaConf.merge(OmegaConf.structured(schema), values)  # type: ignore[return-value]  # a DictConfig


def typed_config(command: str, values: Mapping) -> DictConfig:
    """A whole config of `command` from plain values, such as a run's saved config (which lacks the keys added
    since it was saved: they take their defaults). The noise node takes the schema of its source."""
    values = dict(values)
    noise = values.get("noise")
    if isinstance(noise, Mapping) and noise.get("source") in NOISE:
        values["noise"] = typed_node(NOISE[noise["source"]], noise)
    return typed_node(COMMANDS[command], values)
