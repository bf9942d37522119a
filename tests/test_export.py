import json

import pytest
import torch
from helpers.cli import rmt

from rmt_cli import export, load_run
from rmt_cli.errors import UsageError

STORY = "Mary went to the garden. " + "The rain had stopped and the lane was quiet again. " * 30


@pytest.fixture(scope="module")
def exported(smoke_run_dir, tmp_path_factory):
    return export.export_run(smoke_run_dir, tmp_path_factory.mktemp("export") / "model")


def test_export_loads_back_to_identical_predictions(smoke_run_dir, exported):
    trained, shared = load_run(smoke_run_dir, device="cpu"), load_run(exported, device="cpu")
    assert shared.task == trained.task and shared.segment_length == trained.segment_length
    for question in ("Where is Mary?", "Where is John?", "Where was Mary before the garden?"):
        segments = trained.segments(STORY, question)
        assert len(segments) > 2
        with torch.inference_mode():
            expected, got = trained.model(segments), shared.model(shared.segments(STORY, question))
        assert torch.equal(got.logits, expected.logits) and torch.equal(got.memory, expected.memory)
        assert shared.predict(STORY, question) == trained.predict(STORY, question)


def test_export_folder_is_hugging_face_shaped_with_a_model_card(smoke_run_dir, exported):
    from transformers import AutoModel, AutoTokenizer

    assert AutoModel.from_pretrained(exported).config.hidden_size == 32
    assert AutoTokenizer.from_pretrained(exported)("Mary")["input_ids"]
    settings = json.loads((exported / "rmt_config.json").read_text())
    assert settings["labels"] == ["bathroom", "bedroom", "garden", "hallway", "kitchen", "office"]
    assert (settings["layout"], settings["memory_size"], settings["head"], settings["segment_length"]) == \
        ("encoder", 10, "classify", 64)
    card = (exported / "README.md").read_text()
    best = max(json.loads(line)["val_accuracy"] for line in (smoke_run_dir / "metrics.jsonl").read_text().splitlines()
               if '"val"' in line and '"stage": 2' in line)
    assert "# RMT memorize on tiny" in card and "| 2 | 2 | " in card and f"{best:.1%} |" in card
    assert "| 1 | 1 | 4 | 0.001 |" in card  # the curriculum


def test_export_refuses_a_folder_that_holds_files(smoke_run_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty folder"):
        export.export_run(smoke_run_dir, tmp_path)


def test_rmt_export_writes_the_folder_and_an_offline_push_is_one_line(smoke_run_dir, tmp_path):
    out = tmp_path / "model"
    result = rmt("export", smoke_run_dir, out, "--push-to-hub", "someone/rmt-memorize")
    assert result.returncode == 1 and f"exported {smoke_run_dir} to {out}" in result.stdout
    assert result.stderr.strip().splitlines() == [
        f"error: cannot push to the Hub while offline (HF_HUB_OFFLINE is set); the export is in {out}; "
        f"upload it later with `hf upload someone/rmt-memorize {out}`"]
    assert export.is_export(out)


def test_rmt_eval_reads_an_export(smoke_run_dir, exported, tmp_path):
    result = rmt("eval", "--checkpoint", exported, "--samples", "24", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["segments"] == 2 and report["samples"] == 24
    assert report["accuracy"] == pytest.approx(accuracy_of_the_run(smoke_run_dir, samples=24, segments=2))


def accuracy_of_the_run(run_dir, samples, segments):
    from omegaconf import OmegaConf

    from rmt_cli.checkpoint import find_checkpoint, load_weights, read_meta
    from rmt_cli.experiment import build_experiment
    from rmt_cli.inference import accuracy

    folder = find_checkpoint(run_dir)
    cfg = OmegaConf.create(read_meta(folder)["config"])
    experiment = build_experiment(cfg, "cpu", with_training_data=False)
    load_weights(folder, experiment.model)
    test = experiment.eval_data.sample_set("test", int(cfg.task.eval_seed), segments, samples)
    return accuracy(experiment, experiment.eval_data, test, batch_size=32)


def untrained_run(run_dir, *overrides: str, change=lambda model: None):
    """A run folder of `experiment=smoke` with these overrides, its model saved as the stage-1 checkpoint without
    training (after `change`); returns the experiment."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rmt_cli import config_dir
    from rmt_cli.checkpoint import save_checkpoint
    from rmt_cli.experiment import build_experiment

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", *overrides])
    experiment = build_experiment(cfg, "cpu", with_training_data=False)
    with torch.no_grad():
        change(experiment.model)
    meta = {"config": OmegaConf.to_container(cfg, resolve=True), "stage": 1, "step": 4, "val_accuracy": 0.5,
            "max_segments": 1, "labels": list(experiment.task.labels)}
    save_checkpoint(run_dir / "checkpoints" / "stage1-best", experiment.model, meta)
    return experiment


def test_a_pooler_head_run_exports_and_loads_back(tmp_path):
    """A run of task.head=pooler (the backbone's pooler fine-tuned as part of the head), written without training."""
    experiment = untrained_run(tmp_path / "run", "task.head=pooler")
    out = export.export_run(tmp_path / "run", tmp_path / "model")
    trained, shared = load_run(tmp_path / "run", device="cpu"), load_run(out, device="cpu")
    assert shared.task.head == "pooler" and torch.equal(shared.model.head[0].weight, experiment.model.head[0].weight)
    from transformers import AutoModel

    assert torch.equal(AutoModel.from_pretrained(out).pooler.dense.bias, experiment.model.head[0].bias)
    with torch.inference_mode():
        segments = trained.segments(STORY, "Where is Mary?")
        assert torch.equal(shared.model(segments).logits, trained.model(segments).logits)


def test_a_run_with_rescaled_memory_writes_exports_and_loads_back(tmp_path):
    """memory.rescale_writes adds a learned scale: a checkpoint and its export both rebuild the model with it."""
    # a trained value of the scale, not the one a fresh model starts from
    untrained_run(tmp_path / "run", "memory.rescale_writes=true", change=lambda model: model.write_scale.fill_(0.37))
    out = export.export_run(tmp_path / "run", tmp_path / "model")
    trained, shared = load_run(tmp_path / "run", device="cpu"), load_run(out, device="cpu")
    assert json.loads((out / "rmt_config.json").read_text())["rescale_writes"] is True
    assert trained.model.write_scale.item() == shared.model.write_scale.item() == pytest.approx(0.37)
    with torch.inference_mode():
        segments = trained.segments(STORY, "Where is Mary?")
        expected, got = trained.model(segments), shared.model(segments)
    assert torch.equal(got.memory, expected.memory)
    rms = got.memory.pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.full_like(rms, 0.37), rtol=1e-3, atol=1e-5)


def test_a_run_with_gated_memory_writes_exports_and_loads_back(tmp_path):
    """memory.gated_writes adds the gate's layer: a checkpoint and its export both rebuild the model with it."""
    def trained_gate(model):  # a trained gate, not the one a fresh model starts with
        torch.manual_seed(3)
        model.write_gate.weight.normal_(0, 0.05)
        model.write_gate.bias.uniform_(-3, 3)

    untrained_run(tmp_path / "run", "memory.gated_writes=true", change=trained_gate)
    out = export.export_run(tmp_path / "run", tmp_path / "model")
    trained, shared = load_run(tmp_path / "run", device="cpu"), load_run(out, device="cpu")
    assert json.loads((out / "rmt_config.json").read_text())["gated_writes"] is True
    assert torch.equal(trained.model.write_gate.bias, shared.model.write_gate.bias)
    assert trained.model.write_gate.bias.abs().max() > 2.5
    with torch.inference_mode():
        segments = trained.segments(STORY, "Where is Mary?")
        assert torch.equal(shared.model(segments).memory, trained.model(segments).memory)


@pytest.mark.parametrize("kind", ["every_layer", "associative"])
def test_a_run_with_another_kind_of_memory_exports_and_loads_back(tmp_path, kind):
    """memory.every_layer and memory.associative change the model's shape: a checkpoint and its export both rebuild
    it so."""
    def trained(model):  # associative: reads that change the answer, not the zero scale a fresh model starts with
        for layer in model.associative or []:
            layer.read_scale.fill_(0.7)

    untrained_run(tmp_path / "run", f"memory.{kind}=true", change=trained)
    out = export.export_run(tmp_path / "run", tmp_path / "model")
    loaded, shared = load_run(tmp_path / "run", device="cpu"), load_run(out, device="cpu")
    assert json.loads((out / "rmt_config.json").read_text())[kind] is True
    assert shared.model.initial_memory.shape == loaded.model.initial_memory.shape
    with torch.inference_mode():
        segments = loaded.segments(STORY, "Where is Mary?")
        assert torch.equal(shared.model(segments).memory, loaded.model(segments).memory)
        assert torch.equal(shared.model(segments).logits, loaded.model(segments).logits)
