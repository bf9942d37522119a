"""What every command that reads a trained run (`rmt eval`, `rmt extrapolate`, `rmt attention`) starts with: the
checkpoint or `rmt export` folder it names, the run's config with this command line's overrides on top, typed and
checked, and the experiment with the trained weights loaded.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rmt_cli.checkpoint import RUN_NODES
from rmt_cli.errors import UsageError
from rmt_cli.schema import typed_config
from rmt_cli.schema.rules import shown


def checkpoint_config(cfg, checkpoint_meta: dict, command: str):
    """The run's config, with what the user overrode on this command line applied on top, typed by the schema of
    `command` (keys the run's saved config lacks, added since, take their defaults) and checked.

    Nodes the user re-selected (`task=detect`) come from the fresh composition; single keys (`task.segments=8`)
    are copied onto the run's node; the command's own keys (checkpoint, samples, ...) come from `cfg`.
    """
    from hydra.core.hydra_config import HydraConfig

    from rmt_cli.config_check import check

    saved = OmegaConf.create({k: v for k, v in checkpoint_meta["config"].items() if k in RUN_NODES})
    merged = OmegaConf.merge(saved, {k: cfg[k] for k in cfg if k not in RUN_NODES})
    for key in command_line_keys(HydraConfig.get().overrides.task):
        if key.split(".")[0] in RUN_NODES:
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
    typed = typed_run_config(command, OmegaConf.to_container(merged))  # type: ignore[arg-type]  # a mapping
    check(typed, command)
    return typed


def typed_run_config(command: str, values: dict):
    """schema.typed_config, its errors one line each."""
    from rmt_cli.config_errors import config_error

    try:
        return typed_config(command, values)
    except OmegaConfBaseException as error:
        raise config_error(error, command) from None


def command_line_keys(overrides) -> set[str]:
    """The config keys a list of Hydra overrides sets (`+a.b=1` and `a.b=1` both set `a.b`)."""
    return {override.lstrip("+~").split("=", 1)[0] for override in overrides}


def trained_segment_lengths(meta: dict) -> list[int]:
    """The segment lengths a run was trained on: segment.length, and the `segment_length` of any curriculum stage
    that read segments of another length (a run's saved config holds its curriculum; an export's may not)."""
    from rmt_cli.curriculum import setting

    config = meta["config"]
    length = config["segment"]["length"]
    stages = (config.get("curriculum") or {}).get("stages") or []
    return sorted({length} | {setting(stage, "segment_length", length) for stage in stages})


def check_model_matches(cfg, meta: dict) -> None:
    """The settings that shape the model (memory size and writes, backbone, head) are the checkpoint's, and its
    segments are of a length it was trained on (segment.length, or a stage's own segment_length)."""
    trained = typed_run_config("train", {node: meta["config"][node] for node in RUN_NODES})
    for key in ("memory.size", "memory.rescale_writes", "memory.gated_writes", "memory.every_layer",
                "memory.associative", "backbone.name", "task.head"):
        wanted, used = OmegaConf.select(cfg, key), OmegaConf.select(trained, key)
        if wanted != used:
            raise UsageError(f"the checkpoint was trained with {key}={shown(used)}, not {shown(wanted)}; "
                             "drop that override to evaluate it")
    lengths = trained_segment_lengths(meta)
    if cfg.segment.length not in lengths:
        trained_on = " or ".join(str(length) for length in lengths)
        hint = "drop that override to evaluate it" if len(lengths) == 1 else "use one of those lengths"
        raise UsageError(f"the checkpoint was trained on segments of {trained_on} positions, not "
                         f"segment.length={cfg.segment.length}; {hint}")


def load_trained(cfg):
    """The checkpoint (or `rmt export` folder) named by `cfg.checkpoint`: its folder and metadata, the run's config
    with this command line's overrides, and the experiment with the trained weights loaded.

    Returns (cfg, meta, folder, experiment).
    """
    from hydra.core.hydra_config import HydraConfig

    from rmt_cli import export
    from rmt_cli.checkpoint import load_weights, open_checkpoint
    from rmt_cli.code_trust import CodeNotAllowed, check_checkpoint_backbone
    from rmt_cli.experiment import build_experiment

    exported = export.is_export(cfg.checkpoint)
    if exported:  # its backbone loads from the folder the user named, with no code of its own
        folder = Path(cfg.checkpoint)
        meta = export.checkpoint_meta(folder)
    else:
        folder, meta = open_checkpoint(Path(cfg.checkpoint))
    cfg = checkpoint_config(cfg, meta, HydraConfig.get().job.name)
    user_keys = command_line_keys(HydraConfig.get().overrides.task)
    if not exported:
        try:
            check_checkpoint_backbone(OmegaConf.to_container(cfg.backbone), user_keys, folder)
        except CodeNotAllowed as refused:
            raise UsageError(f"{refused}: add {refused.key}={refused.value} to the command line to allow it") from None
    check_model_matches(cfg, meta)
    experiment = build_experiment(cfg, cfg.device, with_training_data=False, trained_labels=meta.get("labels"))
    if exported:
        export.load_rmt_weights(folder, experiment.model)
    else:
        load_weights(folder, experiment.model, verified=True)
    return cfg, meta, folder, experiment


def command_run_folder(cfg) -> Path:
    """This command's run folder (Hydra's output folder), with the command's resolved config saved in it."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    return run_dir
