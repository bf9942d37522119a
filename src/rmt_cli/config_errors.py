"""A config that does not compose, or does not fit the schema, as one line (exit 2).

Hydra and OmegaConf report a bad override or config file over several lines, in their own terms ("Value 'abc' of
type 'str' could not be converted to Integer"). The line here names the key, the value and what the key takes, as
config_check words it: the value an override sets is checked again with the key's check, else OmegaConf's own
account (key, value, schema) is worded the same way.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from rmt_cli.config_check import check_value, unknown_key
from rmt_cli.errors import UsageError
from rmt_cli.schema import StageConfig
from rmt_cli.schema.rules import shown

MERGING = "Error merging override "
NOT_OVERRIDDEN = "To append to your config use +"


def config_error(error: Exception, command: str) -> UsageError:
    """`error`, raised while composing (or typing) the config of `command`, as one line."""
    override = failing_override(str(error))
    if override is not None and override.is_delete():
        return UsageError(f"{override.input_line}: a key of the schema cannot be removed; set it instead, e.g. "
                          f"{override.key_or_group}=null where it may be null")
    if override is not None:
        try:
            check_value(command, override.key_or_group, override.value())
        except UsageError as worded:
            return worded
    cause = omegaconf_cause(error)
    if cause is None:
        return UsageError(hydra_line(str(error)))
    where = f"{first_line(str(error)).split(':')[0]}: " if str(error).startswith("In '") else ""  # a config file
    line = worded_cause(cause)
    if line is None:  # not about a key of the schema: OmegaConf's own account, after Hydra's
        line = first_line(str(cause))
        if cause is not error and not where:
            line = f"{first_line(str(error))}: {line}"
    return UsageError(where + line)


def under_null_node(override: str) -> UsageError:
    """An override of a key under a null node (an optional node left out, such as a logger not chosen)."""
    key = override.split("=", 1)[0].lstrip("+")
    parent, _, name = key.rpartition(".")
    if parent.startswith("logger."):
        return UsageError(f"{key} cannot be set while {parent} is null; choose that logger first: "
                          f"logger=[jsonl,{parent.split('.')[-1]}]")
    return UsageError(f"{key} cannot be set while {parent} is null; set {parent} as a whole, e.g. "
                      f"'{parent}={{{name}: VALUE}}'")


def failing_override(message: str):
    """The override a Hydra message is about (parsed), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    lines = message.strip().splitlines()
    line = next((text[len(prefix):] for text in lines for prefix in (MERGING, NOT_OVERRIDDEN)
                 if text.startswith(prefix)), None)
    if line is None:
        return None
    try:
        return OverridesParser.create().parse_override(line)
    except HydraException:
        return None


def omegaconf_cause(error: BaseException | None) -> OmegaConfBaseException | None:
    """The OmegaConf error behind `error` (itself, its cause, or the one it was raised while handling)."""
    while error is not None and not isinstance(error, OmegaConfBaseException):
        error = error.__cause__ or error.__context__
    return error


def worded_cause(cause: OmegaConfBaseException) -> str | None:
    """OmegaConf's error about a key of a schema node, worded as config_check words it; None when it is about
    something else."""
    schema, key = getattr(cause, "object_type", None), getattr(cause, "key", None)
    full_key = cause.full_key if cause.full_key is not None else str(key)
    if isinstance(cause, MissingMandatoryValue):
        return f"{full_key} is missing: give it a value on the command line, e.g. {full_key}=VALUE"
    if not (isinstance(schema, type) and is_dataclass(schema) and isinstance(key, str)):
        return None
    known = [setting.name for setting in fields(schema)]
    in_stage = schema is StageConfig  # OmegaConf names a key inside a list item without the item's place
    if key not in known and isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        if in_stage:
            return f"a curriculum stage has an unknown key {key} (known: {', '.join(known)})"
        parent = full_key.rpartition(".")[0]
        return str(unknown_key(f"{parent}." if parent else "", key, known))
    name, value = f"a curriculum stage's {key}" if in_stage else full_key, getattr(cause, "value", None)
    check = next((setting.metadata.get("check") for setting in fields(schema) if setting.name == key), None)
    if check is not None:
        try:
            check(name, value)
        except UsageError as worded:
            return str(worded)
    return f"{name}={shown(value)} does not fit the config ({first_line(str(cause))})"


def first_line(message: str) -> str:
    return next((line.strip() for line in message.strip().splitlines() if line.strip()), "invalid configuration")


def hydra_line(message: str) -> str:
    """Hydra's own message in one line: its first, with the options it lists or the fix it suggests."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "invalid configuration"
    if "Available options" in message:
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options"))
        options = [line for line in lines[start + 1:] if not line.startswith("Config search path")]
        options = options[: next((i for i, o in enumerate(options) if ":" in o), len(options))]
        return f"{first} (available: {', '.join(options)})"
    if first.startswith("Could not override") and len(lines) > 1:
        return f"{first} {lines[1]}"
    return first
