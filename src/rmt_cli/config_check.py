"""The composed config of a command, checked once before anything runs or is written: every key a command reads
has the right type, range or allowed value, and no key is unknown. A problem is one line naming the key, the value
and what it takes (exit 2).

Checks that need the backbone (sizes against its positions, head against its layout) stay in experiment.py.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, TypeGuard

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rmt_cli.errors import UsageError

Check = Callable[[str, object], None]


def shown(value) -> str:
    """A value as it would be written in an override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {shown(item)}" for key, item in value.items()) + "}"
    return str(value)


def is_whole(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(minimum: int = 0, why: str = "") -> Check:
    def check(key, value):
        if not is_whole(value):
            raise UsageError(f"{key}={shown(value)} must be a whole number (at least {minimum})")
        if value < minimum:
            raise UsageError(f"{key}={shown(value)} must be at least {minimum}{why}")
    return check


def number(low: float, high: float = math.inf) -> Check:
    def check(key, value):
        if not is_number(value):
            raise UsageError(f"{key}={shown(value)} must be a finite number")
        if value < low or value > high:
            span = f"between {low:g} and {high:g}" if high < math.inf else f"at least {low:g}"
            raise UsageError(f"{key}={shown(value)} must be {span}")
    return check


def alternatives(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def positive(key, value) -> None:
    if not is_number(value):
        raise UsageError(f"{key}={shown(value)} must be a finite number")
    if value <= 0:
        raise UsageError(f"{key}={shown(value)} must be positive")


def choice(*allowed: str) -> Check:
    def check(key, value):
        if value not in allowed:
            raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(allowed)}")
    return check


def optional(inner: Check) -> Check:
    def check(key, value):
        if value is not None:
            inner(key, value)
    return check


def text(key, value) -> None:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{key}={shown(value)} must be a non-empty text")


def flag(key, value) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{key}={shown(value)} must be true or false")


def texts(key, value) -> None:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) and item for item in items):
        raise UsageError(f"{key}={shown(value)} must be a list of texts, e.g. {key}=[a,b]")


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device(key, value) -> None:
    if not isinstance(value, str) or not DEVICE.fullmatch(value):
        raise UsageError(f"{key}={shown(value)} is unknown; use auto, cpu, cuda or cuda:N")


def gpu_visible(key: str, value) -> None:
    """A CUDA device setting needs a GPU."""
    if isinstance(value, str) and value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"{key}={value} asks for a GPU, but no CUDA GPU is visible; use {key}=cpu or auto")


def scheduler(key, value) -> None:
    from transformers import SchedulerType

    names = [kind.value for kind in SchedulerType if kind.value not in STEPS_ON_A_METRIC]
    if value not in names:
        raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(names)}")


# Schedulers that step on a validation metric; training steps its scheduler once per optimizer step.
STEPS_ON_A_METRIC = ("reduce_lr_on_plateau", "greedy")


def generator(key, value) -> None:
    from rmt_cli.stories import GENERATORS

    if value is not None and value not in GENERATORS:
        raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(GENERATORS)}")


def head(key, value) -> None:
    from rmt_cli.engine import HEADS

    if value is not None and value not in HEADS:
        raise UsageError(f"{key}={shown(value)} is unknown; use {alternatives(HEADS)}")


def layout(key, value) -> None:
    from rmt_cli.engine import LAYOUTS

    if value is not None and value not in LAYOUTS:
        raise UsageError(f"{key}={shown(value)} is unknown; use encoder (BERT family) or decoder "
                         "(GPT-2, OPT, Llama families)")


def free(key, value) -> None:
    """Any value (a transformers config, checked by transformers itself)."""


# Attention implementations built into transformers; a hub kernel name would download and run code.
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")

BACKBONE = {
    "name": text, "layout": layout, "name_or_path": optional(text), "offline_package": optional(text),
    "offline_folder": optional(text),
    "gguf_file": optional(text), "attn_implementation": optional(choice(*ATTENTION)),
    "trust_remote_code": flag, "config": free,
    "tokenizer": {"name_or_path": optional(text), "offline_package": optional(text), "gguf_file": optional(text),
                  "trust_remote_code": flag},
}
TASK = {
    "name": text, "source": choice("generator", "babilong"), "split": text, "length": text,
    "generator": generator, "fact_position": choice("start", "random"), "segments": optional(whole(1)),
    "eval_seed": whole(0), "head": head, "facts_file": optional(text),
}
NOISE = {  # by noise.source
    "austen": {"source": text, "path": optional(text), "eval_documents": texts},
    "files": {"source": text, "paths": texts, "eval_fraction": number(0, 1)},
    "hub": {"source": text, "dataset": text, "text_field": text, "train_split": text, "eval_split": text,
            "max_documents": optional(whole(1))},
    "synthetic": {"source": text, "tokens": whole(1), "seed": whole(0)},
}
TRAINER = {
    "batch_size": whole(1), "eval_batch_size": whole(1), "lr": positive,
    "weight_decay": number(0), "scheduler": scheduler, "warmup_ratio": number(0, 1),
    "grad_clip": positive, "bptt_segments": optional(whole(1)), "checkpoint_segments": flag, "fused_adamw": flag,
    "eval_every": whole(1), "val_samples": whole(1), "log_every": whole(1), "device": device, "devices": whole(1),
    "time_limit_minutes": optional(positive),
    "keep_last": whole(1, " (resume checkpoints to keep)"),
}
MODEL = {"memory": {"size": whole(1), "rescale_writes": optional(flag)}, "segment": {"length": whole(1)}}
CHECKPOINT = {"checkpoint": text, "device": device}
INFERENCE = {"cuda_graphs": flag, "graph_max_rows": optional(whole(1)), "inference_dtype": choice("fp32", "bf16")}

COMMANDS: dict[str, dict] = {
    "train": {"seed": whole(0), "resume": choice("auto", "force"), "trainer": TRAINER},
    "eval": {**CHECKPOINT, **INFERENCE, "samples": whole(1), "batch_size": whole(1)},
    "extrapolate": {**CHECKPOINT, **INFERENCE, "max_segments": None, "segments": None, "samples": whole(1),
                    "batch_size": whole(1)},
    "attention": {**CHECKPOINT, "samples": whole(1), "layer": optional(whole(0)), "head": optional(whole(0))},
    "preview": {"segments": whole(1), "seed": whole(0)},
}


# Command-line options of the checkpoint commands and preview, named as the user typed them.
OPTIONS = {key: f"--{key.replace('_', '-')}" for key in ("samples", "batch_size", "layer", "head", "segments", "seed")}


def check(cfg, command: str, unknown_keys: bool = True) -> None:
    """Check `cfg`, the composed config of `command` (train, eval, ...); Hydra's own node is left to Hydra."""
    values: dict[str, Any]  # each top-level node as plain containers
    try:
        values = {key: OmegaConf.to_container(cfg[key], resolve=True)
                  if isinstance(cfg[key], (DictConfig, ListConfig)) else cfg[key] for key in cfg if key != "hydra"}
    except OmegaConfBaseException as error:
        raise UsageError(f"the config does not resolve: {str(error).strip().splitlines()[0]}") from None
    schema = {"backbone": BACKBONE, "task": TASK, **MODEL, **COMMANDS.get(command, {})}
    if command == "train":
        schema["curriculum"] = None
    if isinstance(values.get("noise"), dict):
        source = values["noise"].get("source")
        if source not in NOISE:
            raise UsageError(f"noise.source={shown(source)} is unknown; use noise=austen, files, pg19 or synthetic")
        schema["noise"] = NOISE[source]
    for group in (config_groups() & set(values)) - set(schema):  # a group without a schema here: its code checks it
        schema[group] = None
    check_node("", values, schema, unknown_keys, names=OPTIONS if command != "train" else None)
    if command == "train":
        check_curriculum(values.get("curriculum"))
        if values["trainer"].get("devices", 1) == 1:  # several: check_trainer counts the GPUs
            gpu_visible("trainer.device", values["trainer"].get("device"))
    elif "device" in values:
        gpu_visible("device", values["device"])
    if command == "extrapolate":
        check_lengths(values)


def config_groups() -> set[str]:
    """The config groups conf/ declares (one folder each)."""
    from rmt_cli import config_dir

    return {path.name for path in config_dir().iterdir() if path.is_dir()}


def check_node(prefix: str, values: dict, schema: dict, unknown_keys: bool, names: dict | None = None) -> None:
    """Check `values` against `schema`; `names` shows some top-level keys as the options the user typed."""
    if unknown_keys:
        for key in values:
            if key not in schema:
                where = f"a setting of {prefix.rstrip('.')}" if prefix else "a setting of this command"
                raise UsageError(f"{prefix}{key} is not {where} (known: {', '.join(schema)}); "
                                 "check its spelling")
    for key, rule in schema.items():
        if key not in values or rule is None:
            continue
        value = values[key]
        if isinstance(rule, dict):
            if not isinstance(value, dict):
                raise UsageError(f"{prefix}{key}={shown(value)} must be a group of settings, not a single value")
            check_node(f"{prefix}{key}.", value, rule, unknown_keys)
        else:
            rule((names or {}).get(key, f"{prefix}{key}"), value)


STAGE = {"segments": None, "steps": whole(1), "lr": optional(positive), "warmup_ratio": optional(number(0, 1)),
         "bptt_segments": optional(whole(1)), "facts_in_last": optional(whole(1)),
         "val_segments": optional(whole(1)), "advance_at": optional(number(0)),
         "confuser_share": optional(number(0, 1)), "multi_fact_share": optional(number(0, 1))}


def check_curriculum(curriculum) -> None:
    if not isinstance(curriculum, dict):
        raise UsageError("curriculum must be a group with `stages`; e.g. curriculum=quick")
    for key in curriculum:
        if key not in ("advance_at", "stages"):
            raise UsageError(f"curriculum.{key} is not a setting of curriculum (known: advance_at, stages); "
                             "check its spelling")
    optional(number(0))("curriculum.advance_at", curriculum.get("advance_at"))
    stages = curriculum.get("stages")
    if not isinstance(stages, list):
        raise UsageError(f"curriculum.stages={shown(stages)} must be a list like [{{segments: 1, steps: 100}}]")
    if not stages:
        raise UsageError("the curriculum has no stages; give curriculum.stages a list like "
                         "[{segments: 1, steps: 100}]")
    for number_, stage in enumerate(stages, start=1):
        if not isinstance(stage, dict):
            raise UsageError(f"curriculum stage {number_} is {shown(stage)}; write each stage as "
                             "{segments: N, steps: K}")
        for key in ("segments", "steps"):
            if key not in stage:
                raise UsageError(f"curriculum stage {number_} has no {key}; write each stage as "
                                 "{segments: N, steps: K}")
        for key in stage:
            if key not in STAGE:
                raise UsageError(f"curriculum stage {number_} has an unknown key {key} "
                                 f"(known: {', '.join(STAGE)})")
        check_stage_segments(number_, stage["segments"])
        if not is_whole(stage["steps"]) or stage["steps"] < 1:
            raise UsageError(f"curriculum stage {number_} has steps={shown(stage['steps'])}; every stage needs at "
                             "least 1 step (a whole number)")
        for key in ("lr", "warmup_ratio", "bptt_segments", "facts_in_last", "val_segments", "advance_at",
                    "confuser_share", "multi_fact_share"):
            check_value = STAGE[key]
            assert check_value is not None  # only segments, checked above, has no Check of its own
            check_value(f"curriculum stage {number_} {key}", stage.get(key))


def check_stage_segments(number_: int, segments) -> None:
    ok = is_whole(segments) and segments >= 1
    if isinstance(segments, list) and len(segments) == 2 and all(is_whole(s) for s in segments):
        ok = 1 <= segments[0] <= segments[1]
    if not ok:
        raise UsageError(f"curriculum stage {number_} has segments={shown(segments)}; use a count ≥ 1 or a range "
                         "[lo, hi]")


def check_lengths(values: dict) -> None:
    """extrapolate's --max-segments and --segments."""
    max_segments, segments = values.get("max_segments"), values.get("segments")
    if not is_whole(max_segments) or max_segments < 1:
        raise UsageError(f"--max-segments {shown(max_segments)}: the longest input must be at least 1 segment")
    if segments is None:
        return
    if not isinstance(segments, list) or not segments:
        raise UsageError(f"segments={shown(segments)}: give at least one length, e.g. --segments 1,2,4,16")
    if not all(is_whole(s) for s in segments):
        raise UsageError(f"segments={shown(segments)}: give whole numbers, e.g. --segments 1,2,4,16")
    if min(segments) < 1:
        raise UsageError(f"segments={shown(segments)}: every length must be at least 1 segment")
