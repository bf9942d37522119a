"""The composed config of a command, checked once before anything runs or is written.

Hydra has typed it against rmt_cli.schema as it composed it (a wrong type or an unknown key fails there, worded by
config_errors.py). This applies the check of every key (ranges, allowed values), refuses keys that a `+key=value`
override added and values left missing (`???`), and checks what joins keys: the noise node's keys by its source, the
curriculum stage by stage, a CUDA device against the GPUs visible. A problem is one line naming the key, the value
and what it takes (exit 2).

Checks that need the backbone (sizes against its positions, head against its layout) stay in experiment.py.
"""

from __future__ import annotations

from dataclasses import Field, fields, is_dataclass
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rmt_cli.errors import UsageError
from rmt_cli.schema import COMMANDS, NOISE, StageConfig
from rmt_cli.schema.rules import shown

# Keys the commands set from their command-line options, named as the user typed them.
OPTIONS = {command: {key: f"--{key.replace('_', '-')}" for key in keys} for command, keys in {
    "train": (), "eval": ("samples", "batch_size"), "extrapolate": ("samples", "batch_size"),
    "attention": ("samples", "layer", "head"), "retention": ("max_segments", "probes", "samples", "batch_size"),
    "preview": ("segments", "seed")}.items()}
STAGE_SHAPE = "write each stage as {segments: N, steps: K}"


def check(cfg, command: str) -> None:
    """Check `cfg`, the composed config of `command` (train, eval, ...); Hydra's own node is left to Hydra."""
    values: dict[str, Any]  # each top-level node as plain containers
    try:
        values = {key: OmegaConf.to_container(cfg[key], resolve=True)
                  if isinstance(cfg[key], (DictConfig, ListConfig)) else cfg[key] for key in cfg if key != "hydra"}
    except OmegaConfBaseException as error:
        raise UsageError(f"the config does not resolve: {str(error).strip().splitlines()[0]}") from None
    check_node("", values, COMMANDS[command], names=OPTIONS[command])
    check_weights_source(values["backbone"])
    if command == "train":
        check_chains(values["curriculum"]["stages"], values["task"]["head"])
        check_generated_share(values["curriculum"], values["noise"])
        if values["trainer"]["devices"] == 1:  # several: train.check_trainer counts the GPUs
            gpu_visible("trainer.device", values["trainer"]["device"])
    elif "device" in values:
        gpu_visible("device", values["device"])


def check_node(prefix: str, values: dict, schema: type, names: dict[str, str] | None = None) -> None:
    """Check the plain `values` of a node against its `schema`; `names` shows some keys as the options typed."""
    known = [setting.name for setting in fields(schema)]
    for key in values:
        if key not in known:
            raise unknown_key(prefix, key, known)
    for setting in fields(schema):
        if setting.name in values:
            key = names[setting.name] if names and setting.name in names else f"{prefix}{setting.name}"
            check_setting(key, setting, node_type(schema, setting), values[setting.name])


def check_setting(key: str, setting: Field, node: type | None, value) -> None:
    """One key of a node: a node of its own (checked key by key), the stages, the noise, or a value."""
    if isinstance(value, str) and value == MISSING:
        raise UsageError(f"{key} is missing: give it a value on the command line, e.g. {key}=VALUE")
    if node is StageConfig:
        check_stages(value)
    elif key == "noise":
        check_noise(value)
    elif node is not None and value is not None:
        if not isinstance(value, dict):
            raise UsageError(f"{key}={shown(value)} must be a group of settings, not a single value")
        check_node(f"{key}.", value, node)
    elif "check" in setting.metadata:
        setting.metadata["check"](key, value)


def node_type(schema: type, setting: Field) -> type | None:
    """The schema of a key that holds a node (or a list of nodes), else None."""
    hint = type_hints(schema)[setting.name]
    if get_origin(hint) in (Union, list):  # Optional[X] or List[X]
        hint = next(arg for arg in get_args(hint) if arg is not type(None))
    return hint if isinstance(hint, type) and is_dataclass(hint) else None


@cache
def type_hints(schema: type) -> dict[str, Any]:
    return get_type_hints(schema)


def unknown_key(prefix: str, key: str, known: list[str]) -> UsageError:
    where = f"a setting of {prefix.rstrip('.')}" if prefix else "a setting of this command"
    return UsageError(f"{prefix}{key} is not {where} (known: {', '.join(known)}); check its spelling")


def check_noise(noise) -> None:
    """The noise node's keys are those of its source."""
    if not isinstance(noise, dict):
        raise UsageError(f"noise={shown(noise)} must be a group of settings; e.g. noise=austen")
    if noise.get("source") not in NOISE:
        raise UsageError(f"noise.source={shown(noise.get('source'))} is unknown; "
                         "use noise=austen, files, pg19 or synthetic")
    check_node("noise.", noise, NOISE[noise["source"]])


def check_stages(stages) -> None:
    """curriculum.stages, each stage named by its number."""
    if not isinstance(stages, list):
        raise UsageError(f"curriculum.stages={shown(stages)} must be a list like [{{segments: 1, steps: 100}}]")
    if not stages:
        raise UsageError("the curriculum has no stages; give curriculum.stages a list like "
                         "[{segments: 1, steps: 100}]")
    known = [setting.name for setting in fields(StageConfig)]
    for number, stage in enumerate(stages, start=1):
        if not isinstance(stage, dict):
            raise UsageError(f"curriculum stage {number} is {shown(stage)}; {STAGE_SHAPE}")
        for key in ("segments", "steps"):
            if isinstance(stage.get(key, MISSING), str) and stage.get(key, MISSING) == MISSING:
                raise UsageError(f"curriculum stage {number} has no {key}; {STAGE_SHAPE}")
        for key in stage:
            if key not in known:
                raise UsageError(f"curriculum stage {number} has an unknown key {key} (known: {', '.join(known)})")
        for setting in fields(StageConfig):
            if setting.name in stage:
                setting.metadata["check"](f"curriculum stage {number} {setting.name}", stage[setting.name])


def check_chains(stages: list[dict], head: str) -> None:
    """A chained stage (chains.py) leaves parts unscored through their label, which only the classifying heads read,
    and carries memory its own way; so do carry_memory and noise_primed (primed.py): a stage sets one of the three."""
    for number, stage in enumerate(stages, start=1):
        starts = [key for key in ("carry_memory", "chain_share", "noise_primed") if stage.get(key)]
        if len(starts) > 1:
            raise UsageError(f"curriculum stage {number} sets both {starts[0]} and {starts[1]}; a row's memory can "
                             "start from one of them only")
        if not stage.get("chain_share"):
            continue
        if head == "generate":
            raise UsageError(f"curriculum stage {number}: chain_share needs task.head=classify or pooler (a generated "
                             "answer cannot be left unscored)")


def check_generated_share(curriculum: dict, noise: dict) -> None:
    """A share of noise from generated text needs training noise that has some."""
    if noise.get("generated_training_tokens"):
        return
    if curriculum.get("generated_share") is not None:
        where = "curriculum.generated_share"
    else:
        stages = curriculum["stages"]
        numbers = [n for n, stage in enumerate(stages, start=1) if stage.get("generated_share") is not None]
        if not numbers:
            return
        where = f"curriculum stage {numbers[0]} generated_share"
    raise UsageError(f"{where} asks for noise windows from generated text, but the training noise has none; set "
                     "noise.generated_training_tokens (e.g. 6000000) or leave generated_share out")


def check_value(command: str, key: str, value: Any) -> None:
    """Check what an override sets `key` to, as check() would in the composed config (config_errors words an
    override that OmegaConf refused with it)."""
    schema: type = COMMANDS[command]
    *parents, name = key.split(".")
    for depth, part in enumerate(parents):
        setting = setting_named(schema, part, ".".join(parents[:depth]))
        node = node_type(schema, setting)
        if node is None:
            return  # under the noise node, or under a free-form one: its schema is chosen later
        schema = node
    setting = setting_named(schema, name, ".".join(parents))
    check_setting(OPTIONS[command][key] if key in OPTIONS[command] else key, setting, node_type(schema, setting), value)


def setting_named(schema: type, name: str, parent: str) -> Field:
    for setting in fields(schema):
        if setting.name == name:
            return setting
    raise unknown_key(f"{parent}." if parent else "", name, [setting.name for setting in fields(schema)])


def check_weights_source(backbone: dict) -> None:
    """A backbone names where its weights come from (conf/backbone/hf.yaml leaves it to the command line)."""
    if all(backbone[key] is None for key in ("name_or_path", "offline_package", "offline_folder", "config")):
        raise UsageError(f"backbone {backbone['name']} names no weights: give backbone.name_or_path (a hub id or "
                         "a model folder)")


def gpu_visible(key: str, value) -> None:
    """A CUDA device setting needs a GPU."""
    if isinstance(value, str) and value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"{key}={value} asks for a GPU, but no CUDA GPU is visible; use {key}=cpu or auto")

