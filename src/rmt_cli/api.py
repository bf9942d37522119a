"""Use RMT from Python: load a trained run or an exported folder, ask a question about a long text, stream a text
segment by segment with the memory in your hands, or wrap any Hugging Face backbone. No Hydra state is involved.

    import rmt_cli

    run = rmt_cli.load_run("outputs/train/RUN")          # a run folder, a checkpoint folder or `rmt export`'s folder
    run.predict(long_text, "Where is Mary?")              # -> "bathroom"

    memory = run.start_memory()                           # the same, one segment at a time
    *reads, last = run.segments(long_text, "Where is Mary?")
    for segment in reads:
        memory = run.read(memory, segment)
    run.answer(memory, last)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from rmt_cli.engine import RecurrentMemory, content_length
from rmt_cli.heads import build_head


@dataclass(frozen=True)
class Task:
    """What the model answers: the task's name and its answers, in the order of the classify head's outputs."""

    name: str
    labels: tuple[str, ...]
    head: str  # classify | pooler | generate


@dataclass
class Run:
    """A RecurrentMemory model with its tokenizer and task, ready to answer questions about texts of any length."""

    model: RecurrentMemory
    tokenizer: Any  # a transformers tokenizer
    task: Task
    segment_length: int

    def __post_init__(self):
        self.model.eval()
        self.head = build_head(self.task.head, self.tokenizer, self.task.labels)

    @property
    def device(self) -> torch.device:
        return self.model.initial_memory.device

    @property
    def content_length(self) -> int:
        """Text tokens per segment (the rest of its positions hold memory and special tokens)."""
        return content_length(self.segment_length, self.model.memory_size, self.model.layout)

    def segments(self, text: str, question: str = "") -> list[Tensor]:
        """The token ids [1, n] of each segment of `text` followed by `question`.

        Segments are cut from the end, so the question closes a full last segment, as in training; the first
        segment holds what is left over.
        """
        ids = self.tokenizer((text + " " + question).strip(), add_special_tokens=False, verbose=False)["input_ids"]
        if not ids:
            raise ValueError("the text and question are empty; give the model something to read")
        size = self.content_length
        cuts = list(range(len(ids), 0, -size))[::-1]
        return [torch.tensor([ids[max(0, end - size):end]], device=self.device) for end in cuts]

    def start_memory(self, batch: int = 1) -> Tensor:
        """The learned initial memory [batch, memory_size, hidden]."""
        with torch.inference_mode():
            return self.model.start_memory(batch).clone()

    def read(self, memory: Tensor, segment: Tensor) -> Tensor:
        """Read one segment [batch, n] of token ids; returns the memory after it."""
        with torch.inference_mode(), self.autocast():
            return self.model.read_segment(memory, segment)[0].to(memory.dtype)

    def answer(self, memory: Tensor, segment: Tensor) -> str:
        """Read the last segment (the one that ends with the question) and answer."""
        with torch.inference_mode(), self.autocast():
            if self.head.kind != "generate":
                return self.task.labels[int(self.model([segment], memory=memory).logits.argmax(-1)[0])]
            generated = self.model.generate([segment], self.head.answer_length, memory=memory)
        label = int(self.head.match(generated)[0])
        if label >= 0:
            return self.task.labels[label]
        tokens = generated[0].tolist()
        return self.tokenizer.decode(tokens[:tokens.index(self.head.end)] if self.head.end in tokens else tokens,
                                     skip_special_tokens=True).strip()

    def predict(self, text: str, question: str) -> str:
        """The answer to `question` about `text`, read segment by segment (only the memory is kept between them)."""
        *reads, last = self.segments(text, question)
        memory = self.start_memory()
        for segment in reads:
            memory = self.read(memory, segment)
        return self.answer(memory, last)

    def autocast(self):
        from rmt_cli.experiment import autocast_for

        return autocast_for(self.model, self.device)


def wrap(backbone, tokenizer, labels: Sequence[str], memory_size: int = 10, segment_length: Optional[int] = None,
         head: str = "classify", layout: Optional[str] = None, task: str = "custom",
         pooler: Optional[nn.Linear] = None, rescale_writes: bool = False, gated_writes: bool = False,
         gate_start: float = 0.88, every_layer: bool = False, associative: bool = False) -> Run:
    """A Run around any Hugging Face model that takes `inputs_embeds`, with fresh memory and head.

    layout: "encoder" (BERT family, a base model) or "decoder" (a causal LM: GPT-2, OPT, Llama families); by
        default decoder for a model with an LM head.
    segment_length: positions per segment (default: the backbone's, at most 512).
    head: "classify" (a linear layer over `labels`), "pooler" (encoders: the backbone's pooler, then a linear
        layer; `pooler=` gives the dense layer when the backbone has none) or "generate" (decoders: answers as text
        from the LM head).
    rescale_writes: each written memory vector RMS-normalised and scaled by one learned number (see engine.py).
    gated_writes: each memory feature updated by a learned share of what a segment wrote, every share starting at
        gate_start (see engine.py).
    every_layer: encoders: memory_size vectors per transformer block, each block reading what it wrote in the
        segment before (see layer_memory.py).
    associative: encoders: each block also keeps a matrix binding keys to values (see associative_memory.py).
    Train `run.model` with your own loop (`run.model(steps)` returns logits and the memory) or with `rmt train`.
    """
    if layout is None:
        layout = "decoder" if backbone.get_output_embeddings() is not None else "encoder"
    positions = int(backbone.config.max_position_embeddings)
    segment_length = segment_length or min(positions, 512)
    if segment_length > positions or content_length(segment_length, memory_size, layout) < 1:
        raise ValueError(f"segment_length={segment_length} does not fit {memory_size} memory vectors into the "
                         f"backbone's {positions} positions; pick a segment_length up to {positions} that leaves room "
                         "for text")
    if head == "pooler" and pooler is None:
        pooler = getattr(getattr(backbone, "pooler", None), "dense", None)
        if not isinstance(pooler, nn.Linear):
            raise ValueError("head='pooler' needs a backbone with a pooler (e.g. a BertModel with its pooling layer), "
                             "or its dense layer as pooler=")
        backbone.pooler = None  # the head applies it to the last segment's [CLS] only
    model = RecurrentMemory(backbone, memory_size=memory_size, num_labels=len(labels), cls_id=tokenizer.cls_token_id,
                            sep_id=tokenizer.sep_token_id, layout=layout, head=head, pooler=pooler,
                            rescale_writes=rescale_writes, gated_writes=gated_writes, gate_start=gate_start,
                            every_layer=every_layer, associative=associative)
    return Run(model.to(next(backbone.parameters()).device), tokenizer, Task(task, tuple(labels), head),
               segment_length)


def load_run(path, device: str = "auto", backbone: Optional[dict] = None) -> Run:
    """A trained model from `rmt train`'s run folder (its last stage's best checkpoint), one checkpoint folder, or
    the folder `rmt export` wrote.

    backbone: backbone settings that replace the checkpoint's, as `backbone.KEY=VALUE` does on the command line,
    e.g. {"name_or_path": "/models/minilm"} for a run trained on weights from a local folder. Like the command line,
    you vouch for them: a checkpoint alone may not choose code to run or import (a folder of weights included)."""
    from omegaconf import OmegaConf

    from rmt_cli import export
    from rmt_cli.backbones import load_backbone
    from rmt_cli.checkpoint import load_weights, open_checkpoint
    from rmt_cli.code_trust import CodeNotAllowed, check_checkpoint_backbone
    from rmt_cli.errors import UsageError
    from rmt_cli.experiment import head_kind, pick_device
    from rmt_cli.run_changes import flatten
    from rmt_cli.trained_run import typed_run_config

    chosen = pick_device(device)
    if export.is_export(path):
        return export.load_export(Path(path), chosen)
    folder, meta = open_checkpoint(Path(path))
    given = backbone or {}
    merged: Any = OmegaConf.to_container(OmegaConf.merge(meta["config"], {"backbone": given}))  # a dict
    cfg = typed_run_config("train", merged)
    try:
        check_checkpoint_backbone(OmegaConf.to_container(cfg.backbone),  # type: ignore[arg-type]  # a dict
                                  set(flatten({"backbone": given})), folder)
    except CodeNotAllowed as refused:
        allow: Any = refused.value
        for name in reversed(refused.key.split(".")[1:]):
            allow = {name: allow}
        raise UsageError(f"{refused}: pass backbone={allow!r} to load_run to allow it") from None
    head = head_kind(cfg)
    loaded = load_backbone(cfg.backbone, with_pooler=head == "pooler")
    run = wrap(loaded.model, loaded.tokenizer, meta["labels"], memory_size=cfg.memory.size,
               segment_length=cfg.segment.length, head=head, layout=loaded.layout, task=cfg.task.name,
               pooler=loaded.pooler, rescale_writes=cfg.memory.rescale_writes,
               gated_writes=cfg.memory.gated_writes, every_layer=cfg.memory.every_layer,
               associative=cfg.memory.associative)
    load_weights(folder, run.model, verified=True)
    run.model.to(chosen)
    return run
