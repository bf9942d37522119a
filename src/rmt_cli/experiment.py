"""From a composed config to the objects every command needs: checked sizes, model, data, device."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rmt_cli.babi import note_single_file
from rmt_cli.backbones import layout, load_backbone, max_positions
from rmt_cli.corpus import load_noise
from rmt_cli.engine import HEADS, RecurrentMemory, content_length, non_content_positions
from rmt_cli.errors import UsageError
from rmt_cli.fused_blocks import fuse_blocks
from rmt_cli.heads import ClassifyHead, GenerateHead, build_head
from rmt_cli.samples import SampleFactory
from rmt_cli.stories import GENERATORS
from rmt_cli.task_spec import TaskSpec

# Room a segment needs: a question and the sentences of a story (longer stories spread over several segments).
MIN_CONTENT_TOKENS = 40


@dataclass
class Experiment:
    model: RecurrentMemory
    tokenizer: Any  # a transformers tokenizer
    task: TaskSpec
    head: ClassifyHead | GenerateHead
    train_data: SampleFactory | None
    eval_data: SampleFactory
    device: torch.device
    resized: dict[int, tuple[SampleFactory, SampleFactory]] = field(default_factory=dict, repr=False)

    def autocast(self):
        return autocast_for(self.model, self.device)

    def data_of_length(self, segment_length: int) -> tuple[SampleFactory, SampleFactory]:
        """Training and validation data in segments of `segment_length` positions (a curriculum stage may set its
        own): the same noise, tasks and tokenizer, each segment holding that many positions' worth of text."""
        assert self.train_data is not None, "only a training run draws data of a stage's own segment length"
        content = content_length(segment_length, self.model.memory_size, self.model.layout)
        if content == self.train_data.content_length:
            return self.train_data, self.eval_data
        if content not in self.resized:
            self.resized[content] = (self.train_data.resized(content), self.eval_data.resized(content))
        return self.resized[content]


# `inference_dtype` of eval and extrapolate: the dtype the weights are cast to, once, before any segment runs.
INFERENCE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def autocast_for(model: RecurrentMemory, device: torch.device):
    """bf16 autocast on GPU for fp32 weights; none for bf16 weights (nothing left to cast), nor on CPU, where bf16
    matmuls are slow and imprecise."""
    if device.type == "cuda" and model.initial_memory.dtype == torch.float32:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def inference_settings(**settings):
    """The inference switches of eval and extrapolate at their defaults (schema.InferenceCommand), `settings` in
    their place: what apply_inference_settings takes, for callers that build a model outside a command."""
    from omegaconf import OmegaConf

    from rmt_cli.schema import InferenceCommand

    return OmegaConf.merge(OmegaConf.structured(InferenceCommand), settings)


def apply_inference_settings(model: RecurrentMemory, cfg) -> None:
    """A command's inference switches (schema.InferenceCommand), on a model that only predicts from now on.

    inference_dtype: fp32 keeps the fp32 weights under bf16 autocast (each matmul casts its operands); bf16 casts
        every weight once, and the memory then stays bf16 from segment to segment, as the hidden states it is.
    graph_max_rows: largest batch replayed as CUDA graphs (null: every batch); see engine.RecurrentMemory.
    fused_blocks: BERT-family blocks with fewer kernels (fused_blocks.py; after the cast: their stacked weights are
        made in the dtype), where the backbone has them.
    compile_blocks: torch.compile each transformer block (after the cast, so the compiled code is the dtype's).
    """
    model.to(INFERENCE_DTYPES[cfg.inference_dtype])
    model.graph_max_rows = cfg.graph_max_rows
    if cfg.fused_blocks and not fuse_blocks(model.backbone):
        raise UsageError(f"fused_blocks=true needs a BERT-family encoder; {type(model.backbone).__name__} has other "
                         "blocks: leave fused_blocks=false")
    if cfg.compile_blocks:
        refuse_compiled_hooked_memory(model, "compile_blocks=true")
        model.compile_blocks()


def refuse_compiled_hooked_memory(model: RecurrentMemory, setting: str) -> None:
    """Compiled blocks and memory read through block hooks (every_layer, associative) do not go together: the hooks
    read a per-segment attribute."""
    for key, used in (("every_layer", model.every_layer), ("associative", model.associative is not None)):
        if used:
            raise UsageError(f"{setting} does not go with memory.{key}=true: leave one of them off")


def task_spec(cfg, trained_labels: list[str] | None = None) -> TaskSpec:
    """The task config as a TaskSpec: a story generator, a bAbI file (task.facts_file) or BABILong (source).

    A relative task.facts_file is made absolute in `cfg`, so the run's saved config works from any folder.
    trained_labels: a checkpoint's labels; the task's answers are mapped to them by name.
    """
    task = cfg.task
    source, facts_file = task.source, task.facts_file
    if facts_file is not None:
        facts_file = task.facts_file = str(Path(facts_file).expanduser().resolve())
    if source not in ("generator", "babilong"):
        raise UsageError(f"task.source={source} is unknown; use generator or babilong")
    if facts_file is not None and source == "babilong":
        raise UsageError("task.facts_file does not apply to task=babilong; use task=qa1 (or another) with it")
    babilong = None
    if source == "babilong":
        if task.length != "0k":
            raise UsageError(f"task.length={task.length}: BABILong's longer configs carry their own PG-19 text; "
                             "this tool places the 0k stories into its own noise (noise=pg19 for the same "
                             "books): use task.length=0k")
        babilong = (task.length, task.split)
    elif facts_file is None and task.generator not in GENERATORS:
        raise UsageError(f"task.generator={task.generator} is unknown (available: {', '.join(GENERATORS)})")
    spec = TaskSpec(name=task.name, generator=task.generator, fact_position=task.fact_position,
                    facts_file=facts_file, babilong=babilong,
                    trained_labels=None if trained_labels is None else tuple(trained_labels))
    answers = spec.answers() if facts_file is not None or trained_labels is not None else ()  # reads the files
    if facts_file is not None:
        note_single_file(facts_file)
    if trained_labels is not None:
        unknown = [answer for answer in answers if answer not in trained_labels]
        if unknown:
            raise UsageError(f"task {task.name} answers {', '.join(unknown)}, which the checkpoint's labels "
                             f"({', '.join(trained_labels)}) do not include; evaluate it on the task it was "
                             "trained for")
    return spec


def head_kind(cfg) -> str:
    """`task.head`, checked against the backbone's layout."""
    kind = cfg.task.head
    if kind not in HEADS:
        raise UsageError(f"task.head={kind} is unknown; use classify, pooler or generate")
    if kind == "generate" and layout(cfg.backbone) != "decoder":
        raise UsageError(f"task.head=generate needs a decoder backbone (its LM head); backbone "
                         f"{cfg.backbone.name} is an encoder: use task.head=classify or e.g. backbone=tiny-gpt2")
    if kind == "pooler" and layout(cfg.backbone) != "encoder":
        raise UsageError(f"task.head=pooler reads an encoder's pooler; backbone {cfg.backbone.name} is a decoder: "
                         "use task.head=classify or generate")
    return kind


def check_sizes(cfg) -> int:
    """Validate memory and segment sizes against the backbone before anything heavy; returns content length."""
    head_kind(cfg)
    return checked_content_length(cfg, cfg.segment.length, "segment.length")


def check_stage_sizes(cfg) -> None:
    """The curriculum stages' own segment lengths (`segment_length`), checked as segment.length is."""
    for number, stage in enumerate(cfg.curriculum.stages, start=1):
        if stage.get("segment_length") is not None:
            checked_content_length(cfg, stage.segment_length, f"curriculum stage {number} segment_length")


def checked_content_length(cfg, length: int, key: str) -> int:
    """Content tokens of a `length`-position segment (`key` is the setting that asks for it), refused when the
    backbone has fewer positions or memory leaves too little room for text."""
    memory = cfg.memory.size
    positions = max_positions(cfg.backbone)
    if length > positions:
        raise UsageError(f"{key}={length} exceeds the backbone's {positions} positions; use {key}={positions} or less")
    kind = layout(cfg.backbone)
    content = content_length(length, memory, kind)
    if content < MIN_CONTENT_TOKENS:
        taken = (f"{non_content_positions(memory, kind) - memory} go to [CLS]/[SEP]" if kind == "encoder" else
                 f"memory is read and written: {non_content_positions(memory, kind)} positions")
        raise UsageError(f"memory.size={memory} leaves {content} content tokens in a {length}-position segment "
                         f"({taken}); need at least {MIN_CONTENT_TOKENS}: lower memory.size or raise {key}")
    return content


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={name} requested but no CUDA GPU is visible; use device=cpu")
    return torch.device(name)


def build_experiment(cfg, device_name: str, with_training_data: bool,
                     trained_labels: list[str] | None = None, seed: int = 0) -> Experiment:
    """The experiment of a config; `seed` seeds the model's initial weights (training's `seed`)."""
    content = check_sizes(cfg)
    if with_training_data:
        check_stage_sizes(cfg)
    device = pick_device(device_name)
    torch.manual_seed(seed)
    backbone = load_backbone(cfg.backbone, with_pooler=head_kind(cfg) == "pooler")
    tokenizer = backbone.tokenizer
    task = task_spec(cfg, trained_labels)
    head = build_head(head_kind(cfg), tokenizer, task.labels)
    length = cfg.segment.length
    if length + head.answer_positions > backbone.max_positions:
        raise UsageError(f"segment.length={length} leaves no room for the answer ({head.answer_positions} "
                         f"token{'s' * (head.answer_positions != 1)} read after the question) in the backbone's "
                         f"{backbone.max_positions} positions; "
                         f"use segment.length={backbone.max_positions - head.answer_positions} or less")
    for key in ("every_layer", "associative"):
        if cfg.memory[key] and backbone.layout != "encoder":
            raise UsageError(f"memory.{key}=true is built for encoders; {cfg.backbone.name} has the "
                             f"{backbone.layout} layout: leave it false")
    if cfg.memory.every_layer and cfg.memory.associative:
        raise UsageError("memory.every_layer=true and memory.associative=true are two alternatives: pick one")
    model = RecurrentMemory(backbone.model, memory_size=cfg.memory.size, num_labels=len(task.labels),
                            cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, layout=backbone.layout,
                            head=head.kind, pooler=backbone.pooler if head.kind == "pooler" else None,
                            rescale_writes=cfg.memory.rescale_writes,
                            gated_writes=cfg.memory.gated_writes, gate_start=cfg.memory.gate_start,
                            every_layer=cfg.memory.every_layer, associative=cfg.memory.associative).to(device)
    noise = load_noise(cfg.noise, tokenizer)
    train_data = SampleFactory(task, noise.train, tokenizer, content) if with_training_data else None
    eval_data = SampleFactory(task, noise.eval, tokenizer, content)
    return Experiment(model, tokenizer, task, head, train_data, eval_data, device)
