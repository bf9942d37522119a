"""Whether a rerun on a run folder is the same run: resuming with a config that alters the run would mix two runs
in one folder, so it is refused unless asked for (`resume=force`)."""

from __future__ import annotations

from typing import Any, Iterable

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rmt_cli.errors import UsageError

# Keys that change where or how fast a run goes, not what it computes.
NOT_ALTERING = {"resume", "trainer.device", "trainer.devices", "trainer.time_limit_minutes", "trainer.fit_time_limit",
                "trainer.keep_last", "trainer.eval_batch_size", "trainer.checkpoint_segments"}
SHOWN = 6  # differing keys named in the message


def flatten(value, prefix: str = "") -> dict:
    """Dotted keys of a nested config (list items as key[i]) and their values."""
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", item) for i, item in enumerate(value))
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        name = f"{prefix}{key}" if str(key).startswith("[") else f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(item, name))
    return flat


def not_altering(key: str) -> bool:
    # a curriculum stage's own checkpoint_segments, like the trainer's, trades memory for time
    return key in NOT_ALTERING or (key.startswith("curriculum.stages[") and key.endswith("].checkpoint_segments"))


def config_changes(saved: dict, current: dict) -> list[str]:
    """`key: old → new` for every key whose value alters the run. Curriculum stages added after the saved ones
    are a continuation, not a change."""
    saved_stages = saved.get("curriculum", {}).get("stages") or []
    current = {**current, "curriculum": {**current.get("curriculum", {}),
                                         "stages": (current.get("curriculum", {}).get("stages") or [])[
                                             :max(len(saved_stages), 1)]}}
    old, new = flatten(saved), flatten(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if not_altering(key) or old.get(key) == new.get(key):
            continue  # a key one side lacks counts as null: configs gain keys with a null default
        changes.append(f"{key}: {old.get(key)} → {new.get(key)}")
    return changes


def completed(saved_config: dict) -> dict:
    """A run's saved config with the keys added since it was saved, at their defaults (as it is typed now)."""
    from rmt_cli.schema import typed_config

    try:
        # OmegaConf types to_container's result as a union: a DictConfig gives a dict
        return OmegaConf.to_container(typed_config("train", saved_config))  # type: ignore[return-value]
    except OmegaConfBaseException:  # a config this version cannot type: compared as saved, its changes listed
        return saved_config


def check_same_run(saved_config: dict, cfg, run_dir) -> None:
    """Refuse to resume `run_dir` with `cfg` when it alters the run that wrote `saved_config`, unless forced."""
    if cfg.resume == "force":
        return
    current = OmegaConf.to_container(cfg, resolve=True)
    changes = config_changes(completed(saved_config), current)  # type: ignore[arg-type]  # a dict
    if changes:
        shown = "; ".join(changes[:SHOWN]) + (f"; and {len(changes) - SHOWN} more" if len(changes) > SHOWN else "")
        raise UsageError(f"run folder {run_dir} holds a run with another config ({shown}): start fresh in another "
                         "folder (hydra.run.dir=DIR), or add resume=force to continue it with the new values")
