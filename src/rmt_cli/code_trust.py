"""What a checkpoint may not decide: which code runs and what gets imported.

A checkpoint's meta.json carries the backbone settings of its run. The settings that choose code (a model folder's
own modelling code through `trust_remote_code`, the folder or hub id that code comes from, the Python package
imported for offline weights, an attention kernel) are taken from the shipped preset of the same backbone name, or
from what the user set; a checkpoint that asks for anything else is refused (CodeNotAllowed). The commands add the
override that allows it to the message.
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
    """The shipped conf/backbone preset called `name` as the schema types it (a checkpoint's backbone is typed the
    same way), or {} when there is none."""
    from rmt_cli.schema import BackboneConfig, typed_node

    path = config_dir() / "backbone" / f"{name}.yaml"
    if not isinstance(name, str) or not SAFE_PRESET_NAME.fullmatch(name) or not path.is_file():
        return {}
    # a mapping: to_container's result of a DictConfig
    return OmegaConf.to_container(typed_node(BackboneConfig, OmegaConf.load(path)))  # type: ignore[return-value]


def normalised(value):
    """None, false, '' and a preset's '???' all mean: not set."""
    return None if value in (None, False, "", "???") else value


class CodeNotAllowed(UsageError):
    """A checkpoint's backbone asks for a setting that chooses code (`key`, a full config key, set to `value`) which
    neither its preset nor the user gave."""

    def __init__(self, folder, key: str, value, preset_name, preset_value):
        self.key, self.value = key, value
        super().__init__(f"checkpoint {folder} asks for {key}={value} (the {preset_name} preset sets {preset_value}); "
                         "a checkpoint cannot choose code to run or import")


def check_checkpoint_backbone(backbone: dict, user_keys: set[str], folder) -> None:
    """Refuse a checkpoint's backbone settings that would choose code the user did not ask for.

    `backbone` is the backbone node about to be used; `user_keys` are the config keys the user set themselves
    (`backbone` itself when the user selected a preset, which then decides everything).
    """
    if "backbone" in user_keys:
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
            if full in user_keys:
                continue
            value, allowed = normalised(given.get(key)), normalised(expected.get(key))
            if value is not None and value != allowed:
                shown = str(value).lower() if isinstance(value, bool) else value
                raise CodeNotAllowed(folder, full, shown, backbone.get("name"),
                                     "nothing" if allowed is None else allowed)
