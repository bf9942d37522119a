"""What a checkpoint may not decide: which code runs and what gets imported.

A checkpoint's meta.json carries the backbone settings of its run. The settings that choose code (a model folder's
own modelling code through `trust_remote_code`, the folder or hub id that code comes from, the Python package
imported for offline weights, an attention kernel) are taken from the shipped preset of the same backbone name, or
from this command line; a checkpoint that asks for anything else is refused with the override that allows it.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf

from rmt_cli import config_dir
from rmt_cli.errors import UsageError

# Keys of a backbone node (and of its `tokenizer` node) that choose code to import or run.
CODE_KEYS = ("trust_remote_code", "name_or_path", "offline_package", "attn_implementation")
SAFE_PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def preset(name) -> dict:
    """The shipped conf/backbone preset called `name`, or {} when there is none."""
    path = config_dir() / "backbone" / f"{name}.yaml"
    if not isinstance(name, str) or not SAFE_PRESET_NAME.fullmatch(name) or not path.is_file():
        return {}
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[return-value]  # a mapping


def normalised(value):
    """None, false, '' and a preset's '???' all mean: not set."""
    return None if value in (None, False, "", "???") else value


def check_checkpoint_backbone(backbone: dict, command_line_keys: set[str], folder) -> None:
    """Refuse a checkpoint's backbone settings that would choose code the user did not ask for.

    `backbone` is the backbone node the command is about to use; `command_line_keys` are the config keys this
    command line set (`backbone` itself when the user selected a preset, which then decides everything).
    """
    if "backbone" in command_line_keys:
        return
    trusted = preset(backbone.get("name"))
    for node in ("", "tokenizer."):
        given = backbone.get(node.rstrip(".")) if node else backbone
        expected = trusted.get(node.rstrip("."), {}) if node else trusted
        if not isinstance(given, dict):
            continue
        expected = expected if isinstance(expected, dict) else {}
        for key in CODE_KEYS:
            full = f"backbone.{node}{key}"
            if full in command_line_keys:
                continue
            value, allowed = normalised(given.get(key)), normalised(expected.get(key))
            if value is not None and value != allowed:
                shown = str(value).lower() if isinstance(value, bool) else value
                preset_has = "nothing" if allowed is None else allowed
                raise UsageError(f"checkpoint {folder} asks for {full}={shown} (the {backbone.get('name')} "
                                 f"preset sets {preset_has}); a checkpoint cannot choose code to run or import: "
                                 f"add {full}={shown} to the command line to allow it")
