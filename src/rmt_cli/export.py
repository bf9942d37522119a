"""`rmt export RUN OUT_DIR`: a trained run as a folder to share, shaped like a Hugging Face model repository.

    config.json, model.safetensors      the backbone, through save_pretrained (AutoModel / AutoModelForCausalLM)
    tokenizer files                     through the tokenizer's save_pretrained
    rmt_config.json                     the RMT settings: layout, memory size, head, labels, segment length, task,
                                        and the run's config (what `rmt eval --checkpoint OUT_DIR` builds on)
    rmt_weights.safetensors             the learned initial memory and the answer head (a pooler head's dense
                                        layer is also written back into the backbone, as its pooler)
    README.md                           a model card: task, curriculum, validation accuracy per stage

`rmt_cli.load_run(OUT_DIR)` reads it back.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers.utils.logging import disable_progress_bar

from rmt_cli.checkpoint import RUN_NODES
from rmt_cli.errors import RuntimeFailure, UsageError

SETTINGS, WEIGHTS, CARD = "rmt_config.json", "rmt_weights.safetensors", "README.md"
FORMAT = "rmt-export/1"


def is_export(path) -> bool:
    return (Path(path) / SETTINGS).is_file()


def read_settings(folder: Path) -> dict:
    try:
        settings = json.loads((Path(folder) / SETTINGS).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise RuntimeFailure(f"{Path(folder) / SETTINGS} is unreadable ({error.__class__.__name__}); "
                             "export the run again with `rmt export RUN OUT_DIR`") from None
    if settings.get("format") != FORMAT:
        raise RuntimeFailure(f"{folder} holds an export of format {settings.get('format')!r}, not {FORMAT!r}; "
                             "export the run again with this version's `rmt export`")
    return settings


def export_run(run_path: Path, out_dir: Path) -> Path:
    """Write the export of a run (its last stage's best checkpoint) or of one checkpoint folder to `out_dir`."""
    from omegaconf import OmegaConf

    from rmt_cli import run_info
    from rmt_cli.api import load_run
    from rmt_cli.checkpoint import find_checkpoint, read_meta
    from rmt_cli.trained_run import typed_run_config

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir} exists and is not an empty folder; choose a new OUT_DIR")
    folder = find_checkpoint(Path(run_path))
    meta = read_meta(folder)
    run_dir = folder.parent.parent if folder.parent.name == "checkpoints" else folder
    run = load_run(folder, device="cpu")
    # every key, saved or at its default; to_container's result of a DictConfig is a dict
    config: dict = OmegaConf.to_container(typed_run_config("train", meta["config"]))  # type: ignore[assignment]
    settings = {
        "format": FORMAT,
        "layout": run.model.layout,
        "memory_size": run.model.memory_size,
        "rescale_writes": run.model.write_scale is not None,
        "gated_writes": run.model.write_gate is not None,
        "every_layer": run.model.every_layer,
        "associative": run.model.associative is not None,
        "head": run.task.head,
        "labels": list(run.task.labels),
        "segment_length": run.segment_length,
        "content_length": run.content_length,
        "task": run.task.name,
        "backbone": config["backbone"]["name"],
        "trained": {key: meta[key] for key in ("stage", "step", "val_accuracy", "max_segments")},
        "run_info": run_info.read(run_dir),
        "run_config": {key: config[key] for key in (*RUN_NODES, "curriculum", "trainer", "seed")},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    disable_progress_bar()  # save_pretrained's bar for a single shard
    run.model.backbone.save_pretrained(out_dir)
    if run.task.head == "pooler":
        head = run.model.head  # Sequential(pooler dense, tanh, dropout, linear)
        assert head is not None and isinstance(head[0], torch.nn.Linear)
        restore_pooler(out_dir, head[0])
    run.tokenizer.save_pretrained(out_dir)
    rmt_state = {name: tensor.contiguous() for name, tensor in run.model.state_dict().items()
                 if not name.startswith("backbone.")}
    save_file(rmt_state, str(out_dir / WEIGHTS))
    (out_dir / SETTINGS).write_text(json.dumps(settings, indent=2))
    (out_dir / CARD).write_text(model_card(settings, validation_by_stage(run_dir / "metrics.jsonl")))
    return out_dir


def restore_pooler(folder: Path, dense: torch.nn.Linear) -> None:
    """Write the pooler head's fine-tuned dense layer back into the saved encoder (BERT-family key names), so that
    the folder holds the whole encoder and loads with its pooler."""
    path = folder / "model.safetensors"
    if not path.is_file():
        raise RuntimeFailure(f"{folder} holds no single model.safetensors to add the pooler to (a sharded "
                             "checkpoint?); the pooler head export supports encoders saved as one file")
    state = load_file(str(path))
    state.update({"pooler.dense.weight": dense.weight.detach().contiguous(),
                  "pooler.dense.bias": dense.bias.detach().contiguous()})
    save_file(state, str(path), metadata={"format": "pt"})


def validation_by_stage(metrics: Path) -> list[dict]:
    """The best validation accuracy of each curriculum stage in a run's metrics.jsonl (empty if it has none)."""
    from rmt_cli.metrics import read_lines

    best: dict[int, dict] = {}
    for row in read_lines(metrics):
        if row.get("kind") == "val" and row["val_accuracy"] > best.get(row["stage"], {}).get("val_accuracy", -1):
            best[row["stage"]] = row
    return [best[stage] for stage in sorted(best)]


def model_card(settings: dict, validation: list[dict]) -> str:
    from rmt_cli.curriculum import setting

    config = settings["run_config"]
    task, stages = config["task"], config["curriculum"]["stages"]
    lines = [
        "---", "library_name: rmt", "tags:", "- recurrent-memory-transformer", "- long-context", "---", "",
        f"# RMT {settings['task']} on {settings['backbone']}", "",
        "A Recurrent Memory Transformer (Bulatov, Kuratov, Burtsev, arXiv 2304.11062): the backbone "
        f"`{settings['backbone']}` ({settings['layout']} layout) reads a long input in segments of "
        f"{settings['segment_length']} positions ({settings['content_length']} text tokens each) and carries "
        f"{settings['memory_size']} memory vectors from one segment to the next.", "",
        "## Task", "",
        f"`{settings['task']}`: facts placed in long natural text (fact position: {task['fact_position']}), "
        f"a question at the end. The `{settings['head']}` head answers with one of {len(settings['labels'])} "
        f"answers: {', '.join(settings['labels'])}.", "",
        "## Training curriculum", "",
        "| stage | segments | steps | learning rate |", "| --: | --: | --: | --: |",
        *(f"| {n} | {stage['segments']} | {stage['steps']} | {setting(stage, 'lr', config['trainer']['lr'])} |"
          for n, stage in enumerate(stages, start=1)), "",
        "## Validation accuracy", "",
        "| stage | segments | step | accuracy |", "| --: | --: | --: | --: |",
        *(f"| {row['stage']} | {row['segments']} | {row['step']} | {row['val_accuracy']:.1%} |" for row in validation),
        "", f"This folder holds stage {settings['trained']['stage']}'s best checkpoint "
        f"({settings['trained']['val_accuracy']:.1%} on {settings['trained']['max_segments']} segments).", "",
        "## Use", "",
        "```python", "import rmt_cli", "", "run = rmt_cli.load_run(\"THIS_FOLDER\")",
        "print(run.predict(long_text, question))", "```", "",
        "`rmt eval --checkpoint THIS_FOLDER` and `rmt extrapolate --checkpoint THIS_FOLDER` evaluate it. "
        "The backbone alone loads with transformers' `from_pretrained`; the memory and the head are in "
        f"`{WEIGHTS}`, the settings in `{SETTINGS}`.", "",
    ]
    info = settings.get("run_info")
    if info:
        git = info.get("git") or {}
        versions = ", ".join(f"{name} {version}" for name, version in info.get("packages", {}).items() if version)
        lines += ["## Provenance", "", f"Trained on {info.get('device')} with {versions}"
                  + (f", from commit {git['commit']}{' (with local changes)' if git.get('dirty') else ''}"
                     if git.get("commit") else "") + ".", ""]
    return "\n".join(lines)


def backbone_config(settings: dict, folder: Path) -> dict:
    """The backbone config node that loads the exported backbone from `folder`."""
    return {"name": settings["backbone"], "layout": settings["layout"], "name_or_path": str(folder),
            "trust_remote_code": False}


def checkpoint_meta(folder: Path) -> dict:
    """What a checkpoint's meta.json says, for an export folder: the run's config with the backbone read from it."""
    settings = read_settings(folder)
    config = {**settings["run_config"], "backbone": backbone_config(settings, Path(folder).resolve())}
    return {"config": config, "labels": settings["labels"], **settings["trained"]}


def load_rmt_weights(folder: Path, model: torch.nn.Module) -> None:
    """Load the memory and head weights of an export into a model whose backbone came from the same folder."""
    path = Path(folder) / WEIGHTS
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for truncated or foreign files
        raise RuntimeFailure(f"cannot read {path}: {' '.join(str(error).split())}; export the run again") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.startswith("backbone.")]
    if missing or unexpected:
        raise RuntimeFailure(f"{path} does not fit the model of {SETTINGS} (missing {missing}, unexpected "
                             f"{unexpected}); export the run again")


def load_export(folder: Path, device: torch.device):
    from rmt_cli.api import wrap
    from rmt_cli.backbones import load_backbone
    from rmt_cli.schema import BackboneConfig, typed_node

    settings = read_settings(folder)
    backbone = load_backbone(typed_node(BackboneConfig, backbone_config(settings, folder)),
                             with_pooler=settings["head"] == "pooler")
    run = wrap(backbone.model, backbone.tokenizer, settings["labels"], memory_size=int(settings["memory_size"]),
               segment_length=int(settings["segment_length"]), head=settings["head"], layout=settings["layout"],
               task=settings["task"], pooler=backbone.pooler,
               # absent: exports made before the setting
               rescale_writes=settings.get("rescale_writes", False), gated_writes=settings.get("gated_writes", False),
               every_layer=settings.get("every_layer", False), associative=settings.get("associative", False))
    load_rmt_weights(folder, run.model)
    run.model.to(device)
    return run


def push_to_hub(folder: Path, repo_id: str) -> str:
    """Upload an export folder to the Hugging Face Hub; returns the repository's URL."""
    later = f"the export is in {folder}; upload it later with `hf upload {repo_id} {folder}`"
    if importlib.util.find_spec("huggingface_hub") is None:
        raise RuntimeFailure(f"--push-to-hub needs huggingface_hub (pip install huggingface_hub); {later}")
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise RuntimeFailure(f"cannot push to the Hub while offline (HF_HUB_OFFLINE is set); {later}")
    try:
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload RMT model (rmt export)")
    except Exception as error:  # network, authentication and Hub errors all come in many types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeFailure(f"cannot push to the Hub ({first}); log in with `hf auth login` if needed; "
                             f"{later}") from None
    return f"https://huggingface.co/{repo_id}"
