"""Model FLOPs of training and MFU (model FLOPs utilisation): the share of the GPU's bf16 peak a run uses.

A training step costs about three forwards (the backward twice one), each over every position of every segment;
the count is rmt_cli.flops's "layers" convention (the transformer layers, no vocabulary projection: the engine reads
hidden states, and a generate head's LM head sees only a few answer positions). Truncated BPTT backpropagates
through fewer segments, so there the figure is an upper bound.
"""

from __future__ import annotations

import torch

from rmt_cli.errors import RmtError

# Dense bf16 peak per GPU (NVIDIA data sheets, SXM parts unless named); the first name found in the device's wins.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("H800", 989.4), ("A100", 312.0))


def peak_flops(device_name: str) -> float | None:
    for name, tflops in PEAK_BF16_TFLOPS:
        if name in device_name:
            return tflops * 1e12
    return None


class TrainingFlops:
    """`fields(tokens_per_s)`: the model TFLOP/s a training step reached over all `processes`, and its MFU on GPUs
    of known peak."""

    def __init__(self, backbone_config, segment_length: int, device: torch.device, processes: int = 1):
        from rmt_cli.flops import forward_flops, shape_from_hf_config

        try:
            shape = shape_from_hf_config(backbone_config)
        except RmtError:  # a backbone whose config the FLOP count does not know: no figures, training goes on
            self.per_position = None
        else:
            self.per_position = 3 * forward_flops(shape, segment_length, "layers") / segment_length
        peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
        self.peak = None if peak is None else peak * processes

    def fields(self, tokens_per_s: float) -> dict:
        if self.per_position is None:
            return {}
        achieved = self.per_position * tokens_per_s
        fields = {"model_tflops_per_s": round(achieved / 1e12, 6)}
        if self.peak:
            fields["mfu"] = round(achieved / self.peak, 4)
        return fields
