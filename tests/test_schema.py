"""The typed config schema (rmt_cli.schema): every shipped config composes against it, its values arrive typed,
null is taken where a key allows it, the keys a saved run lacks take their defaults, and every way a value can miss
the schema is one line (exit 2) on the command line."""

import json
import shutil

import pytest
from hydra import compose, initialize_config_dir
from helpers.cli import rmt
from omegaconf import OmegaConf

from rmt_cli import config_dir
from rmt_cli.config_check import check
from rmt_cli.schema import (
    COMMANDS,
    NOISE,
    InferenceCommand,
    StageConfig,
    TrainerConfig,
    TrainConfig,
    typed_config,
)
from rmt_cli.schema.commands import CheckpointCommand
from rmt_cli.schema.model import MemoryConfig
from rmt_cli.schema.training import LoggerConfig

CHECKPOINT = ["checkpoint=RUN"]  # the checkpoint commands' one required key (not read while composing)


def composed(command: str, *overrides: str):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(command, overrides=[*(CHECKPOINT if issubclass(COMMANDS[command], CheckpointCommand) else []),
                                           *overrides])


def assert_typed(cfg, command: str) -> None:
    assert OmegaConf.get_type(cfg) is COMMANDS[command]
    assert OmegaConf.get_type(cfg.noise) is NOISE[cfg.noise.source]
    if command == "train":
        assert all(OmegaConf.get_type(stage) is StageConfig for stage in cfg.curriculum.stages)
    check(cfg, command)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_config_composes_against_its_schema(command):
    assert_typed(composed(command), command)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_against_the_schema(experiment):
    assert_typed(composed("train", f"experiment={experiment}"), "train")


@pytest.mark.parametrize("noise", sorted(p.stem for p in (config_dir() / "noise").glob("*.yaml")))
def test_every_noise_option_takes_the_schema_of_its_source(noise):
    assert_typed(composed("preview", f"noise={noise}"), "preview")


def test_values_arrive_typed():
    cfg = composed("train", "trainer.lr=1", "curriculum.stages=[{segments:[1,2],steps:5,lr:1,warmup_ratio:0}]")
    assert cfg.trainer.lr == 1.0 and isinstance(cfg.trainer.lr, float)
    stage = cfg.curriculum.stages[0]
    assert isinstance(stage.lr, float) and isinstance(stage.warmup_ratio, float)
    assert stage.bptt_segments is None and stage.confuser_share == 0.0  # left out: the schema's defaults


@pytest.mark.parametrize("command, overrides, keys", [
    ("train", ["trainer.time_limit_minutes=null", "trainer.bptt_segments=null", "curriculum.advance_at=null",
               "task.segments=null", "task.facts_file=null", "backbone.attn_implementation=null",
               "curriculum.stages=[{segments:1,steps:5,lr:null,advance_at:null,val_segments:null}]"],
     ["trainer.time_limit_minutes", "trainer.bptt_segments", "curriculum.advance_at", "task.segments",
      "backbone.attn_implementation", "curriculum.stages.0.lr"]),
    ("train", ["noise=pg19", "noise.max_documents=null", "logger=[jsonl,wandb]", "logger.wandb.entity=null"],
     ["noise.max_documents", "logger.wandb.entity", "logger.tensorboard"]),
    ("eval", ["graph_max_rows=null"], ["graph_max_rows"]),
    ("extrapolate", ["segments=null"], ["segments"]),
    ("attention", ["layer=null", "head=null"], ["layer", "head"]),
])
def test_null_is_taken_where_a_key_allows_it(command, overrides, keys):
    cfg = composed(command, *overrides)
    check(cfg, command)
    assert all(OmegaConf.select(cfg, key) is None for key in keys)


def defaults_of(schema) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(schema))


def yaml_values(path: str) -> dict:
    values = OmegaConf.to_container(OmegaConf.load(config_dir() / path))
    return {key: value for key, value in values.items() if key not in ("defaults", "hydra")}


@pytest.mark.parametrize("path, schema", [
    ("trainer/default.yaml", TrainerConfig), ("memory/default.yaml", MemoryConfig),
    ("base/inference.yaml", InferenceCommand),
    *((f"{command}.yaml", COMMANDS[command]) for command in ("eval", "extrapolate", "attention", "preview"))])
def test_the_schema_defaults_are_those_of_conf(path, schema):
    """The schema's default of a key is what a config that leaves it out means; the shipped one sets the same."""
    defaults = defaults_of(schema)
    assert {key: defaults[key] for key in yaml_values(path)} == yaml_values(path)


def test_the_logger_options_are_the_logger_schema():
    options = {p.stem for p in (config_dir() / "logger").glob("*.yaml")}
    assert options == set(defaults_of(LoggerConfig))
    for option in options:
        assert composed("train", f"logger=[{option}]").logger[option] is not None


def old_run_config() -> dict:
    """The config.yaml of a smoke run as a version before the schema wrote it: without the keys added since."""
    config = OmegaConf.to_container(composed("train", "experiment=smoke"), resolve=True)
    for node, key in (("task", "head"), ("task", "source"), ("task", "split"), ("task", "length"),
                      ("backbone", "layout"), ("backbone", "attn_implementation"), ("backbone", "name_or_path"),
                      ("trainer", "fused_adamw"), ("trainer", "devices")):
        del config[node][key]
    for stage in config["curriculum"]["stages"]:
        for key in [key for key in stage if key not in ("segments", "steps", "val_segments")]:
            del stage[key]
    config["logger"] = {"jsonl": {}}
    return config


def test_a_run_saved_before_keys_existed_takes_their_defaults(tmp_path):
    from rmt_cli.run_changes import check_same_run

    typed = typed_config("train", old_run_config())
    assert OmegaConf.get_type(typed) is TrainConfig and OmegaConf.get_type(typed.noise) is NOISE["synthetic"]
    assert (typed.task.head, typed.task.source, typed.backbone.layout, typed.trainer.fused_adamw) == (
        "classify", "generator", "encoder", True)
    check(typed, "train")
    check_same_run(old_run_config(), composed("train", "experiment=smoke"), tmp_path)  # the same run: resumes


def test_a_checkpoint_saved_before_keys_existed_evaluates(smoke_run_dir, tmp_path):
    from rmt_cli.checkpoint import sha256

    run = tmp_path / "old-run"
    shutil.copytree(smoke_run_dir / "checkpoints" / "stage2-best", run / "checkpoints" / "stage2-best")
    folder = run / "checkpoints" / "stage2-best"
    meta = json.loads((folder / "meta.json").read_text())
    meta["config"] = old_run_config()
    (folder / "meta.json").write_text(json.dumps(meta))
    checksums = {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.name != "manifest.json"}
    (folder / "manifest.json").write_text(json.dumps(checksums))
    result = rmt("eval", "--checkpoint", run, "--samples", "4", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 0, result.stderr
    assert OmegaConf.load(tmp_path / "eval" / "config.yaml").task.head == "classify"


# Every way a value misses the schema, through the command line: one line, exit 2.
CASES = [
    ("train trainer.lr=abc", "trainer.lr=abc must be a finite number"),  # a wrong type
    ("train trainer.checkpoint_segments=maybe", "trainer.checkpoint_segments=maybe must be true or false"),
    ("train task.segments=[2]", "task.segments=[2] must be a whole number (at least 1)"),
    ("train curriculum.stages=[{segments:1,steps:many}]",
     "curriculum stage 1 steps=many must be a whole number (at least 1)"),
    ("train trainer.lr=null", "trainer.lr=null must be a finite number"),  # null where the key takes none
    ("train noise=synthetic +noise.path=texts", "noise.path is not a setting of noise (known: source, tokens, "
                                                "seed); check its spelling"),  # an unknown key
    ("train backbone.nope=1", "backbone.nope is not a setting of backbone (known: name, layout, name_or_path, "
                              "offline_package, offline_folder, gguf_file, attn_implementation, skip_attention_masks, "
                              "relative_bias_sdpa, trust_remote_code, config, tokenizer); check its spelling"),
    ("train trainer.warmup_ratio=1.5", "trainer.warmup_ratio=1.5 must be between 0 and 1"),  # out of range
    ("train task.eval_seed=-1", "task.eval_seed=-1 must be at least 0"),
    ("train logger=[jsonl,wandb] logger.wandb.mode=cloud", "logger.wandb.mode=cloud is unknown; use offline or "
                                                           "online"),  # a bad choice
    ("train logger.wandb.mode=online", "logger.wandb.mode cannot be set while logger.wandb is null; choose that "
                                       "logger first: logger=[jsonl,wandb]"),
    ("train ~trainer.lr", "~trainer.lr: a key of the schema cannot be removed; set it instead, e.g. trainer.lr=null "
                          "where it may be null"),
    ("train backbone=hf", "backbone hf names no weights: give backbone.name_or_path (a hub id or a model folder)"),
    ("train --cfg job trainer.lr=abc", "trainer.lr=abc must be a finite number"),
    ("train -m memory.size=10,abc", "memory.size=abc must be a whole number (at least 1)"),  # before any point runs
    ("preview noise=synthetic backbone=tiny noise.tokens=lots",
     "noise.tokens=lots must be a whole number (at least 1)"),
]


@pytest.mark.parametrize("command, message", CASES, ids=[case[0] for case in CASES])
def test_a_value_that_misses_the_schema_is_one_line(command, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = command.split()
    if args[0] == "train" and "-m" not in args:
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    result = rmt(*args)
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {message}"], result.stderr
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []
