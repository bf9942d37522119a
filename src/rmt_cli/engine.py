"""The recurrent segment engine: one pretrained transformer, a few memory vectors carried from segment to segment.

Two layouts of a segment, picked by the backbone (`backbone.layout` in its preset):

    encoder (BERT family, as in the RMT paper):   [CLS] mem_1 .. mem_m [SEP] content_1 .. content_c [SEP]
    decoder (GPT-2, OPT, Llama families):          mem_1 .. mem_m content_1 .. content_c mem_1 .. mem_m

Positions restart at 0 in every segment, in both layouts: a decoder segment is one sequence of positions
0 .. 2m + c - 1, the read slots first, the write slots last. An encoder's new memory is the last hidden layer at its
memory positions; a decoder reads the memory through its first m positions and, attending causally, writes the next
memory at the last m positions (the same m memory vectors again), which see the whole segment.

The answer comes from the last segment, through one of two heads:
- classify: a linear layer over the task's labels, on the [CLS] hidden state (encoder) or on the hidden state of the
  last content position, the end of the question (decoder).
- pooler (encoders): as the RMT authors' code reads the answer (BertForSequenceClassification): the backbone's own
  pretrained pooler (dense + tanh) on the [CLS] hidden state, then dropout and the linear layer.
- generate (decoders): the backbone's LM head. The answer tokens follow the question directly, before the write
  slots: `mem content answer mem`; the logit at the question's last token predicts the first answer token, each
  answer token predicts the next (teacher forcing). Greedy decoding reads the last segment with the answer so far,
  one token at a time.

Two other kinds of an encoder's memory reach into its transformer blocks through hooks: memory at every layer
(`memory.every_layer`, layer_memory.py) and a key-value matrix per block beside the memory vectors
(`memory.associative`, associative_memory.py). Both ride in the same memory tensor, so nothing below changes for them.

Memory is an explicit value passed in and out, so callers can stream segments, save the state, or truncate
backpropagation. Every command (train, eval, extrapolate, attention, flops) runs through `RecurrentMemory.forward`.
At inference on a GPU each segment step can be replayed as a CUDA graph (`SegmentGraph`): a batch of one sample is
otherwise bound by launching the backbone's kernels from Python.

One module on purpose (a little over 300 lines): both layouts, the three heads, truncated BPTT, streaming and graph
replay all run the same segment step, and reading them side by side is how they stay consistent.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rmt_cli import associative_memory, layer_memory
from rmt_cli.working_copy import WorkingCopy

LAYOUTS = ("encoder", "decoder")
HEADS = ("classify", "pooler", "generate")
SPECIAL_TOKENS_PER_SEGMENT = 3  # encoder layout: [CLS], [SEP] after memory, final [SEP]


def non_content_positions(memory_size: int, layout: str = "encoder") -> int:
    """Positions of a segment that do not hold content: memory and [CLS]/[SEP] (encoder), read and write slots
    (decoder)."""
    if layout == "encoder":
        return memory_size + SPECIAL_TOKENS_PER_SEGMENT
    if layout == "decoder":
        return 2 * memory_size
    raise ValueError(f"unknown segment layout {layout!r}; use one of {LAYOUTS}")


def content_length(segment_length: int, memory_size: int, layout: str = "encoder") -> int:
    """Content tokens per segment: 512 positions with 10 memory vectors leave 499 (encoder) or 492 (decoder)."""
    return segment_length - non_content_positions(memory_size, layout)


@dataclass
class EngineOutput:
    logits: Tensor  # classify: [batch, num_labels]; generate: [batch, 1 + answer tokens read, vocab]
    memory: Tensor  # [batch, memory_size, hidden], the memory after the last segment
    memory_before_last: Optional[Tensor] = None  # the memory the last segment read (None for an iterator of steps)
    last_read: Optional[tuple[Tensor, Tensor]] = None  # generate: (memory, tokens) the last segment read


def transformer_blocks(backbone: nn.Module) -> nn.ModuleList:
    """The list of a Hugging Face backbone's transformer blocks (BERT's encoder.layer, GPT-2's h, Llama's layers,
    ...): the module list as long as its config's layer count."""
    layers = backbone.config.num_hidden_layers  # type: ignore[union-attr]  # every transformers config maps it
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == layers:
            return module
    raise ValueError(f"{type(backbone).__name__} has no list of {layers} transformer blocks")


class RecurrentMemory(nn.Module):
    """Wraps a backbone that accepts `inputs_embeds`: an encoder (`BertModel`-like) or a causal LM (`*ForCausalLM`,
    whose base model gives the hidden states and whose LM head the generate head uses)."""

    graph_devices = ("cuda",)  # device types where `cuda_graphs` applies; tests add "cpu" to run the path eagerly
    # Largest batch replayed as a CUDA graph (None: every batch). Graphs remove launch overhead, which dominates
    # small batches: on an H200 (MiniLM geometry) batch 1 runs 7x faster, batch 32 2.5x, and batch 128 as fast as
    # eager. They lose at large batches only where transformers builds an attention mask under capture
    # (backbone.skip_attention_masks off, transformers < 5.24); see docs/performance.md. The commands set it from
    # their `graph_max_rows` setting.
    graph_max_rows: Optional[int] = None
    # Truncated BPTT's segments before the window (no autograd) run on a copy of the weights in this dtype, without
    # autocast (None: like the window, the weights' own dtype under the caller's autocast). `rmt train` sets it from
    # `trainer.prefix_dtype`.
    prefix_dtype: Optional[torch.dtype] = None
    # Set by `compile_blocks`: the backbone's transformer blocks run torch.compile'd, and steps then run eagerly (no
    # CUDA graphs), the path `bench/bench_engine.py --compile` measures.
    blocks_compiled: bool = False
    # checkpoint_segments' style (`rmt train` sets it from `trainer.reentrant_checkpoints`). False: torch's
    # non-reentrant checkpoint, which records the first forward's autograd graph and runs a Python hook for each
    # tensor it would have saved. True: the reentrant one, whose first forward runs without autograd and whose
    # backward recomputes the segment and backpropagates through it: the same gradients with far less Python per
    # segment, for one process (DDP cannot follow parameters used by a nested backward in every segment).
    reentrant_checkpoints: bool = False

    def __init__(self, backbone: nn.Module, memory_size: int, num_labels: int, cls_id: Optional[int] = None,
                 sep_id: Optional[int] = None, dropout: float = 0.1, layout: str = "encoder",
                 head: str = "classify", pooler: Optional[nn.Linear] = None, rescale_writes: bool = False,
                 gated_writes: bool = False, gate_start: float = 0.88, every_layer: bool = False,
                 associative: bool = False):
        super().__init__()
        if layout not in LAYOUTS or head not in HEADS:
            raise ValueError(f"layout={layout!r}, head={head!r}: use a layout of {LAYOUTS} and a head of {HEADS}")
        if head == "generate" and layout != "decoder":
            raise ValueError("the generate head needs a decoder backbone (its LM head)")
        if head == "pooler" and pooler is None:
            raise ValueError("the pooler head needs the backbone's pooler (its dense layer)")
        if (every_layer or associative) and layout != "encoder":
            raise ValueError("memory at every layer and associative memory are built for the encoder layout")
        if every_layer and associative:
            raise ValueError("memory at every layer and associative memory are two alternatives: pick one")
        self.backbone: Any = backbone  # a Hugging Face model, duck-typed (torch types its attributes Tensor | Module)
        self.memory_size = memory_size
        self.layout = layout
        embeddings = backbone.get_input_embeddings()  # type: ignore[operator]  # torch types it Tensor | Module
        hidden = embeddings.embedding_dim  # OPT's project_in/out keep hidden states at the embedding width
        # Start memory at the scale of the token embeddings the backbone was trained on.
        std = embeddings.weight.detach().float().std().item()
        # The blocks whose hooks carry memory at every layer or an associative memory: a plain tuple, not a module
        # list, so that the blocks stay registered once, under the backbone.
        self.hooked_blocks = tuple(transformer_blocks(backbone)) if every_layer or associative else ()
        # every_layer: m vectors per transformer block, block k's at k*m .. (k+1)*m - 1 (layer_memory.py)
        self.every_layer = every_layer
        if every_layer:
            layer_memory.attach(self.hooked_blocks)
        self.initial_memory = nn.Parameter(torch.randn(memory_size * (len(self.hooked_blocks) if every_layer else 1),
                                                       hidden) * std)
        # associative: a key-value matrix per block, its state after the memory vectors (associative_memory.py)
        self.associative = None
        if associative:
            self.associative = nn.ModuleList(associative_memory.AssociativeLayer(hidden) for _ in self.hooked_blocks)
            associative_memory.attach(self.hooked_blocks)
        # A decoder's written memory is its last hidden layer after the final norm: SmolLM2's has an RMS of about
        # 2.3 where its token embeddings have 0.13, and a Llama-family model feeds inputs_embeds to its first layer
        # unnormalised. With rescale_writes each written vector is RMS-normalised and scaled by one learned number
        # that starts at the token embeddings' RMS, so the memory is read back at the scale of the inputs.
        self.write_scale = None
        if rescale_writes:
            rms = embeddings.weight.detach().float().pow(2).mean(-1).sqrt().mean().item()
            self.write_scale = nn.Parameter(torch.tensor(rms))
        # With gated_writes a segment updates each memory feature only by a learned share g of what it wrote,
        # g = sigmoid(W written + b): g near 0 keeps the old value exactly, so a fact can outlast thousands of
        # segments that write nothing of use. W starts at 0 and b at logit(gate_start): every share starts at
        # gate_start (0.88: close to plain RMT's replacement; low: the memory kept unless a segment opens the gate).
        self.write_gate = None
        if gated_writes:
            if not 0 < gate_start < 1:
                raise ValueError(f"gate_start={gate_start}: a share strictly between 0 and 1")
            self.write_gate = nn.Linear(hidden, hidden)
            nn.init.zeros_(self.write_gate.weight)
            nn.init.constant_(self.write_gate.bias, math.log(gate_start / (1 - gate_start)))
        if layout == "encoder":
            self.register_buffer("special_ids", torch.tensor([cls_id, sep_id]), persistent=False)
        classifier = [nn.Dropout(dropout), nn.Linear(hidden, num_labels)]
        pooled = [] if pooler is None else [pooler, nn.Tanh()]  # None only for the heads that discard it
        self.head = {"classify": nn.Sequential(*classifier), "pooler": nn.Sequential(*pooled, *classifier),
                     "generate": None}[head]
        self.segment_graphs: dict[tuple, SegmentGraph] = {}  # a plain attribute: not module state
        self.prefix_copy: dict[str, WorkingCopy] = {}  # the prefix_dtype copy (not module state), made on use

    def start_memory(self, batch: int) -> Tensor:
        memory = self.initial_memory.unsqueeze(0).expand(batch, -1, -1)
        if self.associative is None:
            return memory
        rows = associative_memory.state_rows(memory.shape[-1], len(self.associative))
        empty = torch.zeros(batch, rows, memory.shape[-1], device=memory.device)  # no key bound yet
        return torch.cat([memory.float(), empty], dim=1)

    def read_segment(self, memory: Tensor, tokens: Tensor, answer: Optional[Tensor] = None,
                     output_attentions: bool = False):
        """One segment for a batch of rows: returns (new memory, readout hidden state, backbone outputs).

        The readout is [rows, hidden] at [CLS] (encoder) or at the last content position (decoder); with `answer`
        tokens (decoder, [rows, a]) read after the content, it is [rows, 1 + a, hidden]: the last content position
        and every answer position.
        """
        embed = self.backbone.get_input_embeddings()
        m = self.memory_size
        if self.layout == "encoder":
            batch = tokens.shape[0]
            cls, sep = embed(self.special_ids).unsqueeze(0).expand(batch, -1, -1).unbind(1)
            read = memory[:, :m].to(cls.dtype)  # every_layer: the first block's share, replaced at its input anyway
            inputs = torch.cat([cls[:, None], read, sep[:, None], embed(tokens), sep[:, None]], dim=1)

            def call():  # the backbone's forward, run inside the hooks' setup where a memory kind needs them
                return self.backbone(inputs_embeds=inputs, output_attentions=output_attentions)

            if self.every_layer:
                out, slots = layer_memory.run(self.hooked_blocks, memory, call)
                return self.written(slots, memory), out.last_hidden_state[:, 0], out
            if self.associative is not None:
                out, state = associative_memory.run(self.hooked_blocks, self.associative, memory[:, m:], m, call)
                slots = self.written(out.last_hidden_state[:, 1:1 + m], memory[:, :m])
                return torch.cat([slots.float(), state], dim=1), out.last_hidden_state[:, 0], out
            out = call()
            return self.written(out.last_hidden_state[:, 1:1 + m], memory), out.last_hidden_state[:, 0], out
        content = embed(tokens)
        memory = memory.to(content.dtype)
        parts = [memory, content] + ([embed(answer)] if answer is not None else []) + [memory]
        inputs = torch.cat(parts, dim=1)
        positions = torch.arange(inputs.shape[1], device=inputs.device).unsqueeze(0)
        out = self.backbone.base_model(inputs_embeds=inputs, position_ids=positions, use_cache=False,
                                       output_attentions=output_attentions)
        hidden = out.last_hidden_state
        last = m + tokens.shape[1] - 1  # the last content position: the end of the question in the last segment
        readout = hidden[:, last] if answer is None else hidden[:, last:last + 1 + answer.shape[1]]
        return self.written(hidden[:, hidden.shape[1] - m:], memory), readout, out

    def written(self, slots: Tensor, previous: Tensor) -> Tensor:
        """The new memory from a segment's memory slots and the memory it read (`previous`): the slots as they are,
        rescaled (`rescale_writes`), and/or mixed into the previous memory by the learned gate (`gated_writes`)."""
        if self.write_scale is not None:
            slots = slots * torch.rsqrt(slots.pow(2).mean(-1, keepdim=True) + 1e-6) * self.write_scale.to(slots.dtype)
        if self.write_gate is not None:
            previous = previous.to(slots.dtype)
            share = torch.sigmoid(self.write_gate(slots)).to(slots.dtype)
            slots = previous + share * (slots - previous)
        return slots

    def memory_parameters(self) -> list[nn.Parameter]:
        """The memory's own parameters: the initial memory, and the write scale, the gate and the associative
        projections where they exist."""
        extra = [] if self.write_scale is None else [self.write_scale]
        gate = [] if self.write_gate is None else list(self.write_gate.parameters())
        associative = [] if self.associative is None else list(self.associative.parameters())
        return [self.initial_memory, *extra, *gate, *associative]

    def compile_blocks(self, mode: Optional[str] = None) -> None:
        """torch.compile each transformer block of the backbone in place, in torch.compile's `mode` (compiled on
        first use, again for new shapes); the recurrence stays eager Python. On an H200 in bf16 this made bert-base's
        extrapolation faster and MiniLM's slower (docs/performance.md), so the commands leave it off unless asked."""
        if self.hooked_blocks:
            raise ValueError("blocks that read memory at every layer or an associative memory are not compiled: "
                             "their hooks read the memory from an attribute that changes every segment")
        for block in transformer_blocks(self.backbone):
            block.compile(mode=mode)
        self.blocks_compiled = True

    def answer_logits(self, readout: Tensor) -> Tensor:
        """Label logits (classify) or next-token logits over the vocabulary (generate), in fp32."""
        if self.head is None:
            return self.backbone.get_output_embeddings()(readout).float()
        return self.head(readout).float()

    def forward(self, steps: Iterable[Tensor], memory: Optional[Tensor] = None, batch: Optional[int] = None,
                grad_steps: Optional[int] = None, n_steps: Optional[int] = None,
                checkpoint_segments: bool = False, cuda_graphs: bool = False,
                answer: Optional[Tensor] = None, carried: Optional[tuple[Tensor, Tensor]] = None,
                memory_hook: Optional[Callable[[int, Tensor], None]] = None) -> EngineOutput:
        """Run a right-aligned batch segment by segment.

        steps: token ids [rows_t, content] per step; rows_t is non-decreasing and the rows of step t are the first
            rows_t samples of the batch (see batches.BatchPlan). The last step holds every row.
        memory: [batch, m, hidden] state to continue from (default: the learned initial memory).
        batch, n_steps: needed only when `steps` is an iterator rather than a list.
        grad_steps: truncated BPTT, gradients flow through the last `grad_steps` steps only; the steps before them
            run without autograd (no activations kept, a forward's cost).
        checkpoint_segments: recompute each segment's activations in backward (memory grows with segments
            by one memory state instead of a whole backbone's activations).
        cuda_graphs: at inference (eval mode, no grad) on CUDA, for batches of at most `graph_max_rows` (any batch
            when it is None), run each step that holds every row as a replayed CUDA graph (`SegmentGraph`, cached
            per shape); other steps run eagerly.
        answer: generate head: [batch, a] answer tokens the last segment reads after the question (a may be 0);
            the logits are the LM's next-token predictions at the question's last token and at each of them.
        carried: (rows [batch] bool, memory [batch, m, hidden]): without `memory`, the rows marked start from that
            memory (one an earlier sample ended with, no gradient) and the others from the initial memory.
        memory_hook: called as memory_hook(step, written) after each step that autograd records (every step, or
            truncated BPTT's window), `written` being the memory [rows_t, ...] the step's rows wrote (memory_map.py).
        """
        if isinstance(steps, (list, tuple)):
            batch, n_steps = steps[-1].shape[0], len(steps)
        if memory is None:
            if batch is None:
                raise ValueError("pass batch= (or memory=) when steps is an iterator")
            memory = self.start_memory(batch)
            if carried is not None:
                rows_carried, carried_memory = carried
                memory = torch.where(rows_carried[:, None, None], carried_memory.to(memory.dtype), memory)
        if (grad_steps is not None or answer is not None) and n_steps is None:
            raise ValueError("truncated BPTT and answers need n_steps= when steps is an iterator")
        if (answer is None) != (self.head is not None):
            raise ValueError("the generate head reads answer tokens (answer=); the classify head takes none")
        detach_before = None if grad_steps is None or n_steps is None else n_steps - grad_steps
        graphs = (cuda_graphs and not self.blocks_compiled and not self.training and not torch.is_grad_enabled()
                  and (self.graph_max_rows is None or memory.shape[0] <= self.graph_max_rows))
        start, rows, first, before_last = memory, 0, 0, None
        readout, static, last_read = None, None, None
        if detach_before and self.prefix_dtype is not None and torch.is_grad_enabled():
            steps = iter(steps)
            prefix = list(itertools.islice(steps, detach_before))
            memory = self.read_prefix(prefix, memory, self.prefix_dtype)
            first, rows = detach_before, prefix[-1].shape[0]
        for step, tokens in enumerate(steps, start=first):
            if detach_before is not None and step == detach_before:
                # Rows that have read a segment continue from a memory without history; rows that start inside the
                # window still start from the (trainable) initial memory.
                if rows == memory.shape[0]:
                    memory = memory.detach()
                elif rows:
                    memory = torch.cat([memory[:rows].detach(), start[rows:].to(memory.dtype)])
            rows = tokens.shape[0]
            if detach_before is not None and step < detach_before:
                # Truncated BPTT: the segments before the window keep no activations for a backward pass.
                with torch.no_grad():
                    new_memory, readout = self._read_states(memory[:rows], tokens)
                memory = keep_unstarted_rows(new_memory, memory)
                continue
            last = n_steps is not None and step == n_steps - 1
            if last:
                before_last = memory.clone() if static is not None else memory  # a replayed graph reuses its buffer
            step_answer = answer if last else None
            if step_answer is not None:
                last_read = (memory.clone() if static is not None else memory, tokens)
            elif graphs and rows == memory.shape[0] and tokens.device.type in self.graph_devices:
                static = self.segment_graph(tokens, memory)
                readout = static.run(tokens, memory)  # the readout and new memory live in static buffers
                memory = static.memory
                continue
            if checkpoint_segments and torch.is_grad_enabled():
                new_memory, readout = self.read_checkpointed(memory[:rows], tokens, step_answer)
            else:
                new_memory, readout = self._read_states(memory[:rows], tokens, step_answer)
            if memory_hook is not None:
                memory_hook(step, new_memory)
            memory = keep_unstarted_rows(new_memory, memory)
        if static is not None and memory is static.memory:  # overwritten by the next call that replays this graph
            memory = memory.clone()
        if readout is None:
            raise ValueError("steps holds no segment")
        return EngineOutput(logits=self.answer_logits(readout), memory=memory, last_read=last_read,
                            memory_before_last=before_last)

    def generate(self, steps: Iterable[Tensor], answer_length: int, memory: Optional[Tensor] = None,
                 batch: Optional[int] = None, n_steps: Optional[int] = None, cuda_graphs: bool = False) -> Tensor:
        """Greedy answer tokens [batch, answer_length] of the generate head.

        The segments run as in `forward`, the last one with no answer token yet; each further token re-reads the
        last segment (its memory and content) with the answer so far. Answers are a few tokens, so this costs a
        few extra reads of one segment.
        """
        if isinstance(steps, (list, tuple)):
            batch = steps[-1].shape[0]
        rows = memory.shape[0] if memory is not None else batch
        if rows is None:
            raise ValueError("pass batch= (or memory=) when steps is an iterator")
        empty = torch.zeros(rows, 0, dtype=torch.long, device=self.initial_memory.device)
        out = self(steps, memory=memory, batch=batch, n_steps=n_steps, cuda_graphs=cuda_graphs, answer=empty)
        answer = out.logits[:, -1].argmax(-1, keepdim=True)
        last_memory, last_tokens = out.last_read
        while answer.shape[1] < answer_length:
            _, readout, _ = self.read_segment(last_memory, last_tokens, answer)
            answer = torch.cat([answer, self.answer_logits(readout[:, -1]).argmax(-1, keepdim=True)], dim=1)
        return answer

    def copy_without_caches(self) -> RecurrentMemory:
        """A deep copy of this model whose caches (its CUDA graphs, its prefix copy) start empty."""
        return copy.deepcopy(self, memo={id(self.segment_graphs): {}, id(self.prefix_copy): {}})

    def read_prefix(self, steps: list[Tensor], memory: Tensor, dtype: torch.dtype) -> Tensor:
        """The memory after truncated BPTT's segments before the window (`steps`, right-aligned as in `forward`),
        read without autograd by a WorkingCopy of this model in `dtype` (refreshed from this model's weights at each
        call), without autocast; returned in the memory's dtype."""
        device = memory.device
        working = self.prefix_copy.get("copy")
        if working is None or working.copy.initial_memory.device != device:
            working = self.prefix_copy["copy"] = WorkingCopy(self, dtype)
        state = memory.detach().to(dtype)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            model = working.refreshed()
            for tokens in steps:
                new_state, _ = model._read_states(state[:tokens.shape[0]], tokens)
                state = keep_unstarted_rows(new_state, state)
        return state.to(memory.dtype)

    def segment_graph(self, tokens: Tensor, memory: Tensor) -> SegmentGraph:
        """The cached static segment step for this batch shape, dtype, autocast and inference mode."""
        device = tokens.device
        autocast = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        key = (device, *tokens.shape, memory.dtype, autocast, torch.is_inference_mode_enabled())
        if key not in self.segment_graphs:
            self.segment_graphs[key] = SegmentGraph(self, tokens.shape[1], memory.shape, memory.dtype, device)
        return self.segment_graphs[key]

    def read_checkpointed(self, memory: Tensor, tokens: Tensor, answer: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """One segment whose activations are recomputed in the backward (checkpoint_segments). The reentrant
        checkpoint passes gradients only through inputs that require them, so a memory cut from its history (every
        row's, at truncated BPTT's first segment in the window) takes the non-reentrant one, which reaches the
        weights without."""
        reentrant = self.reentrant_checkpoints and memory.requires_grad
        return checkpoint(self._read_states, memory, tokens, answer, use_reentrant=reentrant)

    def _read_states(self, memory: Tensor, tokens: Tensor, answer: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        new_memory, readout, _ = self.read_segment(memory, tokens, answer)
        return new_memory, readout


def keep_unstarted_rows(new_memory: Tensor, memory: Tensor) -> Tensor:
    """The memory after a step that read the first rows of the batch: rows that have not started yet keep theirs."""
    rows = new_memory.shape[0]
    return new_memory if rows == memory.shape[0] else torch.cat([new_memory.to(memory.dtype), memory[rows:]])


def capture_graph(step) -> tuple[torch.cuda.CUDAGraph, Any]:
    """`step()` captured as a CUDA graph, and the outputs of the captured call (static buffers that each replay
    refills). Captured under the caller's autocast dtype with the weight-cast cache off: cached casts made outside
    the graph would be freed when the caller's autocast region ends, while the graph kept reading them."""
    autocast = torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"),
                              enabled=torch.is_autocast_enabled("cuda"), cache_enabled=False)
    side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graph's documentation asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), autocast:
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), autocast:
        outputs = step()
    return graph, outputs


class SegmentGraph:
    """One inference segment step on static buffers: `tokens` and `memory` in, new memory and readout hidden out.

    On CUDA the step is captured once as a CUDA graph and each `run` replays it: one launch instead of the
    backbone's hundreds of kernel launches from Python. On other devices `run` calls the same step eagerly, so the
    copy-in/copy-out logic is the same everywhere. Capture happens under the caller's inference mode and autocast
    dtype (capture_graph).
    """

    def __init__(self, model: RecurrentMemory, content: int, memory_shape: torch.Size, memory_dtype: torch.dtype,
                 device: torch.device):
        self.model = model
        self.tokens = torch.zeros(memory_shape[0], content, dtype=torch.long, device=device)
        self.memory = torch.zeros(memory_shape, dtype=memory_dtype, device=device)  # rows, slots, hidden
        self.graph: torch.cuda.CUDAGraph | None = None
        if device.type == "cuda":
            with torch.cuda.device(device):
                self._capture()

    def _step(self) -> tuple[Tensor, Tensor]:
        return self.model._read_states(self.memory, self.tokens)

    def _capture(self) -> None:
        try:
            self.graph, self.outputs = capture_graph(self._step)
        except RuntimeError as error:
            # A backbone whose forward does what capture forbids (a host-to-device copy, a sync): its steps run
            # eagerly, as with cuda_graphs=false, rather than the whole evaluation failing.
            self.graph = None
            lines = str(error).strip().splitlines()
            reason = lines[0] if lines else type(error).__name__
            warnings.warn(f"this backbone's segment step cannot be captured as a CUDA graph ({reason}); it runs "
                          "without graphs (cuda_graphs=false skips the attempt)", RuntimeWarning, stacklevel=2)

    def run(self, tokens: Tensor, memory: Tensor) -> Tensor:
        """Read one segment. The new memory lands in `self.memory`; the returned readout hidden state is a static
        buffer too. Both are overwritten by the next `run`."""
        self.tokens.copy_(tokens)
        if memory is not self.memory:
            self.memory.copy_(memory)
        if self.graph is None:
            new_memory, readout = self._step()
        else:
            self.graph.replay()
            new_memory, readout = self.outputs
        self.memory.copy_(new_memory)  # the step's inputs were read in full before this copy
        return readout
