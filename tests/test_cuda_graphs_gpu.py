"""CUDA graph replay of inference segment steps on a real GPU (skipped elsewhere; CPU tests cover the logic): MPNet,
whose eager mask transformers 5.17 built with a host-to-device copy that capture forbids, on both attention paths."""

import pytest
import torch

from rmt_cli.engine import RecurrentMemory
from rmt_cli.relative_bias_sdpa import attend_relative_bias_with_sdpa

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_mpnet_engine(relative_bias_sdpa: bool) -> RecurrentMemory:
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=30527, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    backbone = MPNetModel(config, add_pooling_layer=False)
    if relative_bias_sdpa:
        attend_relative_bias_with_sdpa(backbone)
    return RecurrentMemory(backbone, memory_size=4, num_labels=6, cls_id=0, sep_id=2, dropout=0.0).cuda().eval()


@pytest.mark.parametrize("relative_bias_sdpa", [True, False])
def test_mpnet_segment_steps_replay_as_graphs_with_the_plain_results(relative_bias_sdpa):
    engine = tiny_mpnet_engine(relative_bias_sdpa)
    generator = torch.Generator().manual_seed(1)
    steps = [torch.randint(1000, 30000, (3, 40), generator=generator).cuda() for _ in range(4)]
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        plain = engine(steps)
        replayed = engine(steps, cuda_graphs=True)
    assert len(engine.segment_graphs) == 1
    if relative_bias_sdpa:  # rmt's path is captured on every transformers version
        assert all(graph.graph is not None for graph in engine.segment_graphs.values())
    torch.testing.assert_close(replayed.logits.float(), plain.logits.float())
    torch.testing.assert_close(replayed.memory.float(), plain.memory.float())
