"""Loading pretrained backbones from local folders."""

import torch
from omegaconf import OmegaConf

from conftest import tiny_bert


def test_a_bf16_folder_loads_as_fp32_master_weights(tokenizer, tmp_path):
    from rmt_cli.backbones import load_backbone

    folder = tmp_path / "bf16-backbone"
    tiny_bert().to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    backbone = load_backbone(OmegaConf.create({"name": "local", "name_or_path": str(folder)}))
    assert {p.dtype for p in backbone.model.parameters()} == {torch.float32}
