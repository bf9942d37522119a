"""The recurrent segment engine: one pretrained encoder, a few memory vectors carried from segment to segment.

Encoder layout of every segment (BERT family, as in the RMT paper):

    [CLS] mem_1 .. mem_m [SEP] content_1 .. content_c [SEP]        positions restart at 0 in every segment

The hidden states of the last layer at the memory positions become the memory of the next segment; the answer is
read from the [CLS] of the last segment. Memory is an explicit value passed in and out, so callers can stream
segments, save the state, or truncate backpropagation. Every command (train, eval, extrapolate, attention, flops)
runs through `RecurrentMemory.forward`. At inference on a GPU each segment step can be replayed as a CUDA graph
(`SegmentGraph`): a batch of one sample is otherwise bound by launching the encoder's kernels from Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

SPECIAL_TOKENS_PER_SEGMENT = 3  # [CLS], [SEP] after memory, final [SEP]


def content_length(segment_length: int, memory_size: int) -> int:
    """Content tokens per segment: 512 positions with 10 memory vectors leave 499."""
    return segment_length - memory_size - SPECIAL_TOKENS_PER_SEGMENT


@dataclass
class EngineOutput:
    logits: Tensor  # [batch, num_labels], from the last segment's [CLS]
    memory: Tensor  # [batch, memory_size, hidden], the memory after the last segment


class RecurrentMemory(nn.Module):
    """Wraps an encoder (`BertModel`-like: `.embeddings.word_embeddings`, accepts `inputs_embeds`)."""

    graph_devices = ("cuda",)  # device types where `cuda_graphs` applies; tests add "cpu" to run the path eagerly
    # Graphs remove launch overhead, which dominates small batches only. Measured on an H100 (bert-base geometry):
    # batch 1 went from 5.5 to 2.5 ms per segment, but batch 128 ran 4x slower than eager; see docs/performance.md.
    graph_max_rows = 8

    def __init__(self, backbone: nn.Module, memory_size: int, num_labels: int, cls_id: int, sep_id: int,
                 dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.memory_size = memory_size
        hidden = backbone.config.hidden_size
        embeddings = backbone.get_input_embeddings()
        # Start memory at the scale of the token embeddings the encoder was trained on.
        std = embeddings.weight.detach().float().std().item()
        self.initial_memory = nn.Parameter(torch.randn(memory_size, hidden) * std)
        self.register_buffer("special_ids", torch.tensor([cls_id, sep_id]), persistent=False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_labels))
        self.segment_graphs: dict[tuple, SegmentGraph] = {}  # a plain attribute: not module state

    def start_memory(self, batch: int) -> Tensor:
        return self.initial_memory.unsqueeze(0).expand(batch, -1, -1)

    def read_segment(self, memory: Tensor, tokens: Tensor, output_attentions: bool = False):
        """One segment for a batch of rows: returns (new memory, [CLS] hidden state, backbone outputs)."""
        embed = self.backbone.get_input_embeddings()
        batch = tokens.shape[0]
        cls, sep = embed(self.special_ids).unsqueeze(0).expand(batch, -1, -1).unbind(1)
        inputs = torch.cat([cls[:, None], memory.to(cls.dtype), sep[:, None], embed(tokens), sep[:, None]], dim=1)
        out = self.backbone(inputs_embeds=inputs, output_attentions=output_attentions)
        hidden = out.last_hidden_state
        return hidden[:, 1:1 + self.memory_size], hidden[:, 0], out

    def forward(self, steps: Iterable[Tensor], memory: Optional[Tensor] = None, batch: Optional[int] = None,
                grad_steps: Optional[int] = None, n_steps: Optional[int] = None,
                checkpoint_segments: bool = False, cuda_graphs: bool = False) -> EngineOutput:
        """Run a right-aligned batch segment by segment.

        steps: token ids [rows_t, content] per step; rows_t is non-decreasing and the rows of step t are the first
            rows_t samples of the batch (see samples.BatchPlan). The last step holds every row.
        memory: [batch, m, hidden] state to continue from (default: the learned initial memory).
        batch, n_steps: needed only when `steps` is an iterator rather than a list.
        grad_steps: truncated BPTT, gradients flow through the last `grad_steps` steps only.
        checkpoint_segments: recompute each segment's activations in backward (memory grows with segments
            by one memory state instead of a whole encoder's activations).
        cuda_graphs: at inference (eval mode, no grad) on CUDA, for batches of at most `graph_max_rows`, run each
            step that holds every row as a replayed CUDA graph (`SegmentGraph`, cached per shape); other steps
            run eagerly.
        """
        if isinstance(steps, (list, tuple)):
            batch, n_steps = steps[-1].shape[0], len(steps)
        if memory is None:
            if batch is None:
                raise ValueError("pass batch= (or memory=) when steps is an iterator")
            memory = self.start_memory(batch)
        if grad_steps is not None and n_steps is None:
            raise ValueError("truncated BPTT needs n_steps= when steps is an iterator")
        detach_before = None if grad_steps is None else n_steps - grad_steps
        graphs = (cuda_graphs and not self.training and not torch.is_grad_enabled()
                  and memory.shape[0] <= self.graph_max_rows)
        cls, static = None, None
        for step, tokens in enumerate(steps):
            if detach_before is not None and step == detach_before:
                memory = memory.detach()
            rows = tokens.shape[0]
            if graphs and rows == memory.shape[0] and tokens.device.type in self.graph_devices:
                static = self.segment_graph(tokens, memory)
                cls = static.run(tokens, memory)  # [CLS] and the new memory live in the graph's static buffers
                memory = static.memory
                continue
            if checkpoint_segments and torch.is_grad_enabled():
                new_memory, cls = checkpoint(self._read_states, memory[:rows], tokens, use_reentrant=False)
            else:
                new_memory, cls = self._read_states(memory[:rows], tokens)
            # Rows that have not started yet keep their initial memory.
            memory = new_memory if rows == memory.shape[0] else torch.cat([new_memory.to(memory.dtype), memory[rows:]])
        if static is not None:  # the static buffer is overwritten by the next call that replays this graph
            memory = memory.clone()
        return EngineOutput(logits=self.head(cls).float(), memory=memory)

    def segment_graph(self, tokens: Tensor, memory: Tensor) -> SegmentGraph:
        """The cached static segment step for this batch shape, dtype, autocast and inference mode."""
        device = tokens.device
        autocast = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        key = (device, *tokens.shape, memory.dtype, autocast, torch.is_inference_mode_enabled())
        if key not in self.segment_graphs:
            self.segment_graphs[key] = SegmentGraph(self, tokens.shape[0], tokens.shape[1], memory.dtype, device)
        return self.segment_graphs[key]

    def _read_states(self, memory: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        new_memory, cls, _ = self.read_segment(memory, tokens)
        return new_memory, cls


class SegmentGraph:
    """One inference segment step on static buffers: `tokens` and `memory` in, new memory and [CLS] hidden out.

    On CUDA the step is captured once as a CUDA graph and each `run` replays it: one launch instead of the
    encoder's hundreds of kernel launches from Python. On other devices `run` calls the same step eagerly, so the
    copy-in/copy-out logic is the same everywhere. Capture happens under the caller's inference mode and autocast
    dtype, with autocast's weight-cast cache off: cached casts made outside the graph would be freed when the
    caller's autocast region ends, while the graph kept reading them.
    """

    def __init__(self, model: RecurrentMemory, rows: int, content: int, memory_dtype: torch.dtype,
                 device: torch.device):
        self.model = model
        self.tokens = torch.zeros(rows, content, dtype=torch.long, device=device)
        self.memory = torch.zeros(rows, *model.initial_memory.shape, dtype=memory_dtype, device=device)
        self.graph = None
        if device.type == "cuda":
            with torch.cuda.device(device):
                self._capture()

    def _step(self) -> tuple[Tensor, Tensor]:
        return self.model._read_states(self.memory, self.tokens)

    def _capture(self) -> None:
        autocast = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),
                                  enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)
        side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graph's documentation asks
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), autocast:
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), autocast:
            self.outputs = self._step()

    def run(self, tokens: Tensor, memory: Tensor) -> Tensor:
        """Read one segment. The new memory lands in `self.memory`; the returned [CLS] hidden state is a static
        buffer too. Both are overwritten by the next `run`."""
        self.tokens.copy_(tokens)
        if memory is not self.memory:
            self.memory.copy_(memory)
        if self.graph is None:
            new_memory, cls = self._step()
        else:
            self.graph.replay()
            new_memory, cls = self.outputs
        self.memory.copy_(new_memory)  # the step's inputs were read in full before this copy
        return cls
