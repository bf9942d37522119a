"""Every input a user can get wrong: one line on stderr naming the problem and the fix, its exit code, no
traceback, and nothing written. docs/errors.md's first table is this table (`python tests/test_bad_input.py`
rewrites it; a test checks that it matches).

Placeholders in commands and messages: RUN (a run folder with a tiny checkpoint), GENERATE_RUN (the same with a
decoder that generates its answers), ASKING_RUN (a checkpoint whose meta.json turns on remote code), DAMAGED_RUN
(a checkpoint with one flipped bit), NO_META_RUN (a checkpoint whose meta.json is `{}`), FILES (a folder of
broken files).
"""

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from helpers.cli import rmt

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
TABLE_START = "<!-- generated from tests/test_bad_input.py: start -->"
TABLE_END = "<!-- generated from tests/test_bad_input.py: end -->"
TRAINER_KEYS = ("batch_size, eval_batch_size, lr, memory_lr_scale, memory_map, memory_map_target, memory_map_hidden, "
                "weight_decay, scheduler, warmup_ratio, grad_clip, ema_decay, skip_spikes, revert_drop, bptt_segments, "
                "prefix_dtype, compute_dtype, checkpoint_segments, reentrant_checkpoints, fused_adamw, "
                "compile_blocks, fused_norms, fused_blocks, eval_every, val_samples, log_every, device, devices, "
                "time_limit_minutes, fit_time_limit, keep_last, init_from")
SCHEDULERS = ("linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt, "
              "cosine_with_min_lr, cosine_warmup_with_min_lr or warmup_stable_decay")

# (command, exit code, the line after "error: ")
CASES = [
    # Config keys and values, checked before anything runs.
    ("rmt train task=nope", 2,
     "In 'train': Could not find 'task/nope' (available: babilong, detect, memorize, qa1, qa2, qa3, qa5, reasoning)"),
    ("rmt train trainer.nope=1", 2, f"trainer.nope is not a setting of trainer (known: {TRAINER_KEYS}); check its "
                                    "spelling"),
    ("rmt train +trainer.lrr=1", 2, f"trainer.lrr is not a setting of trainer (known: {TRAINER_KEYS}); check its "
                                    "spelling"),
    ("rmt train -m --cfg job experiment=smoke", 2,
     "-m runs a sweep and --cfg prints without running: give one of them"),
    ("rmt preview -m task=qa1,qa2", 2,
     "rmt preview prints one sample and runs no sweeps: drop -m, and run it once per task"),
    ("rmt train +epochs=3", 2, "epochs is not a setting of this command (known: backbone, task, noise, memory, "
                               "segment, seed, resume, trainer, curriculum, logger); check its spelling"),
    ("rmt train memory.size=0", 2, "memory.size=0 must be at least 1"),
    ("rmt train memory.size=abc", 2, "memory.size=abc must be a whole number (at least 1)"),
    ("rmt train memory.size=2.5", 2, "memory.size=2.5 must be a whole number (at least 1)"),
    ("rmt train trainer.checkpoint_segments=maybe", 2, "trainer.checkpoint_segments=maybe must be true or false"),
    ("rmt train trainer.ema_decay=1.5", 2, "trainer.ema_decay=1.5 must be between 0 and 1"),
    ("rmt train logger.wandb.mode=online", 2,
     "logger.wandb.mode cannot be set while logger.wandb is null; choose that logger first: logger=[jsonl,wandb]"),
    ("rmt train backbone=hf", 2,
     "backbone hf names no weights: give backbone.name_or_path (a hub id or a model folder)"),
    ("rmt train segment.length=abc", 2, "segment.length=abc must be a whole number (at least 1)"),
    ("rmt train seed=-1", 2, "seed=-1 must be at least 0"),
    ("rmt train resume=maybe", 2, "resume=maybe is unknown; use auto or force"),
    ("rmt train memory.size=120", 2,
     "memory.size=120 leaves 5 content tokens in a 128-position segment (3 go to [CLS]/[SEP]); need at least 40: "
     "lower memory.size or raise segment.length"),
    ("rmt train segment.length=600", 2,
     "segment.length=600 exceeds the backbone's 512 positions; use segment.length=512 or less"),
    ("rmt train backbone=tiny-gpt2 memory.size=50", 2,
     "memory.size=50 leaves 28 content tokens in a 128-position segment (memory is read and written: 100 positions); "
     "need at least 40: lower memory.size or raise segment.length"),
    ("rmt train backbone.layout=sideways", 2,
     "backbone.layout=sideways is unknown; use encoder (BERT family) or decoder (GPT-2, OPT, Llama families)"),
    ("rmt train backbone.attn_implementation=kernels-community/flash", 2,
     "backbone.attn_implementation=kernels-community/flash is unknown; use sdpa, eager, flash_attention_2, "
     "flash_attention_3 or flex_attention"),
    ("rmt train task.head=answer", 2, "task.head=answer is unknown; use classify, pooler or generate"),
    ("rmt train task.head=generate", 2,
     "task.head=generate needs a decoder backbone (its LM head); backbone minilm is an encoder: use "
     "task.head=classify or e.g. backbone=tiny-gpt2"),
    ("rmt train backbone=tiny-gpt2 task.head=generate segment.length=512", 2,
     "segment.length=512 leaves no room for the answer (1 token read after the question) in the backbone's 512 "
     "positions; use segment.length=511 or less"),
    ("rmt train task.fact_position=middle", 2, "task.fact_position=middle is unknown; use start or random"),
    ("rmt train task.generator=qa9", 2, "task.generator=qa9 is unknown; use qa1, qa1-world, qa2, qa3, qa4 or qa5"),
    ("rmt train curriculum.stages=5", 2, "curriculum.stages=5 must be a list like [{segments: 1, steps: 100}]"),
    ("rmt train curriculum.stages=[]", 2,
     "the curriculum has no stages; give curriculum.stages a list like [{segments: 1, steps: 100}]"),
    ("rmt train curriculum.stages=[4]", 2, "curriculum stage 1 is 4; write each stage as {segments: N, steps: K}"),
    ("rmt train curriculum.stages=[{segments:2}]", 2,
     "curriculum stage 1 has no steps; write each stage as {segments: N, steps: K}"),
    ("rmt train curriculum.stages=[{segments:0,steps:5}]", 2,
     "curriculum stage 1 segments=0 must be a count ≥ 1 or a range [lo, hi]"),
    ("rmt train curriculum.stages=[{segments:[4,2],steps:5}]", 2,
     "curriculum stage 1 segments=[4, 2] must be a count ≥ 1 or a range [lo, hi]"),
    ("rmt train curriculum.stages=[{segments:1,steps:0}]", 2, "curriculum stage 1 steps=0 must be at least 1"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,speed:2}]", 2,
     "curriculum stage 1 has an unknown key speed (known: segments, steps, lr, warmup_ratio, bptt_segments, "
     "checkpoint_segments, ema_decay, revert_drop, facts_in_last, facts_before_question, val_segments, val_samples, "
     "eval_every, advance_at, confuser_share, confuser_answers, multi_fact_share, carry_memory, noise_primed, "
     "primed_segments, chain_share, chain_steps, generated_share, segment_length, batch_size, lengths_per)"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,confuser_answers:rare}]", 2,
     "curriculum stage 1 confuser_answers=rare is unknown; use natural or even"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,batch_size:0}]", 2,
     "curriculum stage 1 batch_size=0 must be at least 1"),
    ("rmt train curriculum.stages=[{segments:[1,4],steps:5,lengths_per:step}]", 2,
     "curriculum stage 1 lengths_per=step is unknown; use sample or batch"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,lr:-1}]", 2, "curriculum stage 1 lr=-1 must be positive"),
    ("rmt train experiment=smoke curriculum.stages=[{segments:1,steps:5,segment_length:50}]", 2,
     "memory.size=10 leaves 37 content tokens in a 50-position segment (3 go to [CLS]/[SEP]); need at least 40: "
     "lower memory.size or raise curriculum stage 1 segment_length"),
    ("rmt train curriculum.stages=[{segments:2,steps:5,chain_share:0.5,carry_memory:0.5}]", 2,
     "curriculum stage 1 sets both carry_memory and chain_share; a row's memory can start from one of them only"),
    ("rmt train curriculum.stages=[{segments:2,steps:5,carry_memory:0.5,noise_primed:0.5}]", 2,
     "curriculum stage 1 sets both carry_memory and noise_primed; a row's memory can start from one of them only"),
    ("rmt train curriculum.stages=[{segments:2,steps:5,noise_primed:0.5,primed_segments:0}]", 2,
     "curriculum stage 1 primed_segments=0 must be a count ≥ 1 or a range [lo, hi]"),
    ("rmt train curriculum.stages=[{segments:1,steps:5},{segments:2,steps:5,generated_share:0.5}]", 2,
     "curriculum stage 2 generated_share asks for noise windows from generated text, but the training noise has "
     "none; set noise.generated_training_tokens (e.g. 6000000) or leave generated_share out"),
    ("rmt train curriculum.generated_share=1.5", 2, "curriculum.generated_share=1.5 must be between 0 and 1"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,val_segments:0}]", 2,
     "curriculum stage 1 val_segments=0 must be at least 1"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,eval_every:0}]", 2,
     "curriculum stage 1 eval_every=0 must be at least 1"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,confuser_share:1.5}]", 2,
     "curriculum stage 1 confuser_share=1.5 must be between 0 and 1"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,multi_fact_share:-0.5}]", 2,
     "curriculum stage 1 multi_fact_share=-0.5 must be between 0 and 1"),
    ("rmt train curriculum.stages=[{segments:1,steps:5,advance_at:-1}]", 2,
     "curriculum stage 1 advance_at=-1 must be at least 0"),
    ("rmt train curriculum.advance_at=high", 2, "curriculum.advance_at=high must be a finite number"),
    ("rmt train trainer.batch_size=0", 2, "trainer.batch_size=0 must be at least 1"),
    ("rmt train trainer.eval_batch_size=0", 2, "trainer.eval_batch_size=0 must be at least 1"),
    ("rmt train trainer.eval_every=0", 2, "trainer.eval_every=0 must be at least 1"),
    ("rmt train trainer.log_every=0", 2, "trainer.log_every=0 must be at least 1"),
    ("rmt train trainer.val_samples=0", 2, "trainer.val_samples=0 must be at least 1"),
    ("rmt train trainer.skip_spikes=0", 2, "trainer.skip_spikes=0 must be positive"),
    ("rmt train trainer.revert_drop=5", 2, "trainer.revert_drop=5 must be between 0 and 1"),
    ("rmt train trainer.compute_dtype=fp16", 2, "trainer.compute_dtype=fp16 is unknown; use fp32 or bf16"),
    ("rmt train trainer.prefix_dtype=fp16", 2, "trainer.prefix_dtype=fp16 is unknown; use fp32 or bf16"),
    ("rmt train experiment=smoke backbone=tiny-llama trainer.fused_blocks=true", 2,
     "trainer.fused_blocks=true needs a BERT-family encoder; LlamaForCausalLM has other blocks: leave it false"),
    ("rmt train experiment=smoke trainer.fused_norms=true", 2,
     "trainer.fused_norms=true needs a Llama-family decoder (RMSNorm layers); BertModel has none: leave it false"),
    ("rmt train experiment=smoke backbone=tiny-gpt2 memory.every_layer=true", 2,
     "memory.every_layer=true is built for encoders; tiny-gpt2 has the decoder layout: leave it false"),
    ("rmt train experiment=smoke memory.every_layer=true trainer.compile_blocks=true", 2,
     "trainer.compile_blocks=true does not go with memory.every_layer=true: leave one of them off"),
    ("rmt train experiment=smoke backbone=tiny-gpt2 memory.associative=true", 2,
     "memory.associative=true is built for encoders; tiny-gpt2 has the decoder layout: leave it false"),
    ("rmt train experiment=smoke memory.associative=true memory.every_layer=true", 2,
     "memory.every_layer=true and memory.associative=true are two alternatives: pick one"),
    ("rmt train experiment=smoke trainer.memory_map=1", 2,
     "trainer.memory_map=1.0 reads the places a story's relations put around each place (task=reasoning); "
     "task=memorize has other facts: set it to 0 or use trainer.memory_map_target=answer (task=memorize or detect)"),
    ("rmt train experiment=smoke task=reasoning trainer.memory_map=1 trainer.memory_map_target=answer", 2,
     "trainer.memory_map=1.0 with trainer.memory_map_target=answer asks for the answer one fact gives "
     "(task=memorize or detect); task=reasoning has stories of several facts: set it to 0"),
    ("rmt train experiment=smoke task=reasoning trainer.memory_map=1 "
     "curriculum.stages=[{segments:2,steps:2,carry_memory:0.5}]", 2,
     "trainer.memory_map=1.0: curriculum stage 1 starts rows from a memory of other samples (carry_memory, "
     "chain_share or noise_primed), whose map is unknown; set it to 0 or drop those"),
    ("rmt train trainer.memory_map=-1", 2, "trainer.memory_map=-1 must be at least 0"),
    ("rmt train trainer.memory_map_target=places", 2,
     "trainer.memory_map_target=places is unknown; use relations, ends or answer"),
    ("rmt train trainer.lr=-1e-4", 2, "trainer.lr=-0.0001 must be positive"),
    ("rmt train trainer.lr=nan", 2, "trainer.lr=nan must be a finite number"),
    ("rmt train trainer.weight_decay=-1", 2, "trainer.weight_decay=-1 must be at least 0"),
    ("rmt train trainer.grad_clip=-1", 2, "trainer.grad_clip=-1 must be positive"),
    ("rmt train trainer.warmup_ratio=-1", 2, "trainer.warmup_ratio=-1 must be between 0 and 1"),
    ("rmt train trainer.time_limit_minutes=-1", 2, "trainer.time_limit_minutes=-1 must be positive"),
    ("rmt train trainer.scheduler=nope", 2, f"trainer.scheduler=nope is unknown; use {SCHEDULERS}"),
    ("rmt train trainer.device=tpu", 2, "trainer.device=tpu is unknown; use auto, cpu, cuda or cuda:N"),
    ("rmt train trainer.device=cuda", 2,
     "trainer.device=cuda asks for a GPU, but no CUDA GPU is visible; use trainer.device=cpu or auto"),
    ("rmt train trainer.bptt_segments=0", 2, "trainer.bptt_segments=0 must be at least 1"),
    ("rmt train trainer.keep_last=0", 2, "trainer.keep_last=0 must be at least 1 (resume checkpoints to keep)"),
    ("rmt train trainer.devices=0", 2, "trainer.devices=0 must be at least 1"),
    ("rmt train experiment=smoke trainer.devices=3", 2,
     "trainer.batch_size=4 is the global batch and must divide evenly over 3 processes; use a multiple of 3"),
    ("rmt train experiment=smoke trainer.devices=2 trainer.reentrant_checkpoints=true", 2,
     "trainer.reentrant_checkpoints=true trains on one process; with trainer.devices=2 leave it false"),
    ("rmt train experiment=smoke trainer.devices=2 curriculum.stages=[{segments:1,steps:2,batch_size:3}]", 2,
     "curriculum stage 1 batch_size=3 is the global batch and must divide evenly over 2 processes; use a multiple "
     "of 2"),
    ("rmt train experiment=smoke trainer.devices=2 trainer.device=cuda", 2,
     "trainer.devices=2 needs 2 GPUs, 0 visible; lower trainer.devices or use trainer.device=cpu"),
    ("rmt train noise.source=tape", 2, "noise.source=tape is unknown; use noise=austen, files, pg19 or synthetic"),
    ("rmt train noise=files noise.eval_fraction=2", 2, "noise.eval_fraction=2 must be between 0 and 1"),
    ("rmt train hydra.run.dir=/proc/rmt", 2,
     "cannot write the run folder /proc/rmt (No such file or directory); choose another with hydra.run.dir=DIR"),
    ("rmt train hydra.run.dir=", 2, "hydra.run.dir is empty; give the folder for this run, e.g. "
                                    "hydra.run.dir=outputs/my-run"),
    # Files.
    ("rmt train experiment=smoke noise=files noise.paths=[/no/such/dir]", 1,
     "noise path /no/such/dir does not exist; fix noise.paths"),
    ("rmt train experiment=smoke noise=files noise.paths=[FILES/latin1.txt]", 1,
     "FILES/latin1.txt is not UTF-8 text (bad byte at offset 3); convert it (e.g. `iconv -f latin1 -t utf-8`) or "
     "remove it from the corpus"),
    ("rmt train experiment=smoke noise=files noise.paths=[FILES/empty.txt]", 1,
     "the files noise corpus contains no text; add more text to noise.paths or change noise.eval_fraction"),
    ("rmt train experiment=smoke noise=files noise.paths=[FILES/pipes]", 2,
     "noise file FILES/pipes/fifo.txt is not a regular file (a named pipe, socket or device); remove it or fix "
     "noise.paths"),
    ("rmt train experiment=smoke noise=files noise.paths=[FILES/one-line.txt]", 1,
     "FILES/one-line.txt holds 30,000 tokens in 1 sentence(s), none starting in its last 10% (held out for "
     "evaluation): noise is cut at sentence starts, so give text with sentence ends (. ! ?) or blank lines"),
    ("rmt train experiment=smoke task.facts_file=FILES/qa1_bad_train.txt", 2,
     "FILES/qa1_bad_train.txt line 2: expected 'ID text' (a number, one space, the text), got 'broken line'"),
    ("rmt train experiment=smoke task=qa2 task.facts_file=FILES/qa8_lists_train.txt", 2,
     "FILES/qa8_lists_train.txt line 3: answer 'apple,milk' is not one of the task's labels (bathroom, bedroom, "
     "garden, hallway, kitchen, office); is this a file of another bAbI task? Pick the matching task, or set "
     "task.generator=null to take the labels from the file"),
    ("rmt train experiment=smoke task=qa1 task.facts_file=FILES/bad_case_train.txt", 2,
     "FILES/bad_case_train.txt line 2: answer 'Bathroom' differs from the label 'bathroom' only in case; write it "
     "'bathroom'"),
    ("rmt train experiment=smoke task=qa1 task.facts_file=FILES/tabbed_train.txt", 2,
     "FILES/tabbed_train.txt line 1: a TAB inside a statement (only question lines hold TABs, as "
     "'ID question?<TAB>answer<TAB>supporting IDs'); got '1 Mary went\\tto the kitchen.'"),
    ("rmt train experiment=smoke task=qa1 task.facts_file=FILES/untabbed_train.txt", 2,
     "FILES/untabbed_train.txt line 2: a question without its answer; expected 'ID question?<TAB>answer<TAB>"
     "supporting IDs'"),
    ("rmt eval --checkpoint RUN task=qa5", 2,
     "task qa5 answers Mary, Jeff, Fred, Bill, football, apple, milk, which the checkpoint's labels (bathroom, "
     "bedroom, garden, hallway, kitchen, office) do not include; evaluate it on the task it was trained for"),
    # Checkpoints.
    ("rmt eval --checkpoint /no/such/run", 1,
     "checkpoint path /no/such/run does not exist; pass the run folder written by `rmt train`"),
    ("rmt eval --checkpoint FILES", 1,
     "FILES holds no checkpoint (model.safetensors under checkpoints/stageN-best); pass the run folder written by "
     "`rmt train`"),
    ("rmt eval --checkpoint DAMAGED_RUN", 1,
     "checkpoint DAMAGED_RUN/checkpoints/stage1-best is damaged (model.safetensors does not match its checksum); "
     "use another checkpoint (an earlier stageN-best) or train again"),
    ("rmt eval --checkpoint NO_META_RUN", 2,
     "checkpoint NO_META_RUN/checkpoints/stage1-best: meta.json lacks config, max_segments, labels; it is not a "
     "checkpoint of `rmt train` (pass a run folder it wrote)"),
    ("rmt eval --checkpoint ASKING_RUN", 2,
     "checkpoint ASKING_RUN/checkpoints/stage1-best asks for backbone.trust_remote_code=true (the tiny preset sets "
     "nothing); a checkpoint cannot choose code to run or import: add backbone.trust_remote_code=true to the "
     "command line to allow it"),
    ("rmt eval --checkpoint RUN memory.size=20", 2,
     "the checkpoint was trained with memory.size=10, not 20; drop that override to evaluate it"),
    ("rmt eval --checkpoint RUN memory.rescale_writes=true", 2,
     "the checkpoint was trained with memory.rescale_writes=false, not true; drop that override to evaluate it"),
    ("rmt train memory.gate_start=1", 2, "memory.gate_start=1 must be a number strictly between 0 and 1"),
    ("rmt eval --checkpoint RUN memory.gated_writes=true", 2,
     "the checkpoint was trained with memory.gated_writes=false, not true; drop that override to evaluate it"),
    ("rmt eval --checkpoint RUN memory.every_layer=true", 2,
     "the checkpoint was trained with memory.every_layer=false, not true; drop that override to evaluate it"),
    ("rmt eval --checkpoint RUN memory.associative=true", 2,
     "the checkpoint was trained with memory.associative=false, not true; drop that override to evaluate it"),
    ("rmt eval --checkpoint GENERATE_RUN task.head=classify", 2,
     "the checkpoint was trained with task.head=generate, not classify; drop that override to evaluate it"),
    ("rmt eval --checkpoint RUN segment.length=48", 2,
     "the checkpoint was trained on segments of 64 positions, not segment.length=48; drop that override to evaluate "
     "it"),
    ("rmt eval --checkpoint RUN backbone=minilm", 2,
     "the checkpoint was trained with backbone.name=tiny, not minilm; drop that override to evaluate it"),
    ("rmt eval --checkpoint RUN --samples 0", 2, "--samples=0 must be at least 1"),
    ("rmt eval --checkpoint RUN --batch-size 0", 2, "--batch-size=0 must be at least 1"),
    ("rmt eval --checkpoint RUN task.segments=0", 2, "task.segments=0 must be at least 1"),
    ("rmt eval --checkpoint RUN device=tpu", 2, "device=tpu is unknown; use auto, cpu, cuda or cuda:N"),
    ("rmt eval --checkpoint RUN inference_dtype=fp16", 2, "inference_dtype=fp16 is unknown; use fp32 or bf16"),
    ("rmt extrapolate --checkpoint RUN graph_max_rows=0", 2, "graph_max_rows=0 must be at least 1"),
    ("rmt extrapolate --checkpoint RUN --max-segments 0", 2,
     "--max-segments 0: the longest input must be at least 1 segment"),
    ("rmt extrapolate --checkpoint RUN --segments 1,x", 2, "segments=[1, x]: give whole numbers, e.g. --segments "
                                                           "1,2,4,16"),
    ("rmt extrapolate --checkpoint RUN --segments 1.5", 2,
     "segments=[1.5]: give whole numbers, e.g. --segments 1,2,4,16"),
    ("rmt extrapolate --checkpoint RUN --segments ''", 2,
     "segments=[]: give at least one length, e.g. --segments 1,2,4,16"),
    ("rmt attention --checkpoint RUN --layer 9", 2,
     "--layer 9: the backbone has 2 layers (0-1); leave --layer out to average over all of them"),
    ("rmt attention --checkpoint RUN --samples 0", 2, "--samples=0 must be at least 1"),
    ("rmt retention --checkpoint RUN --max-segments 1", 2,
     "--max-segments 1: a traced input must be at least 2 segments (a fact read before the question's segment)"),
    ("rmt retention --checkpoint RUN --probes 0", 2, "--probes=0 must be at least 1"),
    # rmt flops
    ("rmt flops --models opt-9b", 2,
     "unknown model 'opt-9b': known models are opt-125m, opt-350m, opt-1.3b, opt-2.7b, opt-6.7b, opt-13b, opt-30b, "
     "opt-66b, opt-175b (or use --backbone NAME|PATH)"),
    ("rmt flops --tokens 0", 2, "--tokens must be positive, got 0; e.g. --tokens 512,4096,2048000"),
    ("rmt flops --out FILES/latin1.txt", 2,
     "--out FILES/latin1.txt: FILES/latin1.txt is a file, not a folder; give a folder for flops.csv and flops.png"),
    # The results protocol.
    ("rmt reproduce run out --seeds 0,a", 2, "--seeds '0,a': give a comma-separated list, e.g. --seeds 0,1,2"),
    ("rmt reproduce run out --beyond 20480 --beyond-seed 5", 2, "--beyond-seed 5 is not one of --seeds 0,1,2"),
    ("rmt reproduce run out --parallel 0", 2, "--parallel 0: give at least 1 (the most jobs running at once)"),
    ("rmt reproduce run out --init-from FILES", 2, "--init-from FILES: FILES/memorize/seed0 holds no finished "
     "training; give the OUT of an `rmt reproduce run` that trained every task and seed asked for"),
    ("rmt reproduce resume FILES", 2, "FILES holds no plan of `rmt reproduce run` (plan.json)"),
    ("rmt reproduce summarize FILES --into out", 1,
     "FILES is not a folder of `rmt reproduce run`: FILES/plan.json is missing"),
    ("rmt reproduce compare FILES --task detect", 2,
     "FILES holds no summary.json of `rmt reproduce summarize` (nor FILES/summary/summary.json)"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The placeholders' paths: broken files and checkpoints, each made once."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from rmt_cli import config_dir
    from rmt_cli.checkpoint import save_checkpoint, sha256
    from rmt_cli.experiment import build_experiment

    root = tmp_path_factory.mktemp("bad")
    files = root / "files"
    (files / "pipes").mkdir(parents=True)
    (files / "latin1.txt").write_bytes("caf\xe9 au lait. ".encode("latin-1") * 10)
    (files / "empty.txt").write_text("")
    os.mkfifo(files / "pipes" / "fifo.txt")
    (files / "one-line.txt").write_text(" ".join(["river"] * 30_000))  # one sentence, no end
    (files / "qa1_bad_train.txt").write_text("1 Mary went to the kitchen.\nbroken line\n")
    (files / "qa8_lists_train.txt").write_text("1 Mary got the milk there.\n2 Mary took the apple there.\n"
                                               "3 What is Mary carrying?\tapple,milk\t1 2\n")
    (files / "bad_case_train.txt").write_text("1 Mary went to the kitchen.\n2 Where is Mary?\tBathroom\t1\n")
    (files / "tabbed_train.txt").write_text("1 Mary went\tto the kitchen.\n2 Where is Mary?\tkitchen\t1\n")
    (files / "untabbed_train.txt").write_text("1 Mary went to the kitchen.\n2 Where is Mary?\n")
    places = {"FILES": files}
    for name, overrides in (("RUN", []), ("GENERATE_RUN", ["backbone=tiny-gpt2", "task.head=generate"])):
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=["experiment=smoke", *overrides])
        experiment = build_experiment(cfg, "cpu", with_training_data=False)
        meta = {"config": OmegaConf.to_container(cfg, resolve=True),
                "stage": 1, "step": 1, "val_accuracy": 0.0, "max_segments": 1, "labels": list(experiment.task.labels)}
        places[name] = root / name.lower()
        save_checkpoint(places[name] / "checkpoints" / "stage1-best", experiment.model, meta)

    def variant(name, change):
        places[name] = root / name.lower()
        shutil.copytree(places["RUN"], places[name])
        folder = places[name] / "checkpoints" / "stage1-best"
        change(folder)
        if name != "DAMAGED_RUN":
            checksums = {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.name != "manifest.json"}
            (folder / "manifest.json").write_text(json.dumps(checksums))

    def flip_a_bit(folder):
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[len(data) // 2] ^= 1
        (folder / "model.safetensors").write_bytes(bytes(data))

    def ask_for_remote_code(folder):
        meta = json.loads((folder / "meta.json").read_text())
        meta["config"]["backbone"]["trust_remote_code"] = True
        (folder / "meta.json").write_text(json.dumps(meta))

    variant("DAMAGED_RUN", flip_a_bit)
    variant("NO_META_RUN", lambda folder: (folder / "meta.json").write_text("{}"))
    variant("ASKING_RUN", ask_for_remote_code)
    return places


def substitute(text: str, places: dict) -> str:
    for name in sorted(places, key=len, reverse=True):  # GENERATE_RUN before RUN
        text = text.replace(name, str(places[name]))
    return text


@pytest.mark.parametrize("command, code, message", CASES, ids=[case[0][4:] for case in CASES])
def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(command, code, message, places, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = shlex.split(substitute(command, places))[1:]
    if args[0] in ("train", "eval", "extrapolate", "attention") and not any("hydra.run.dir" in a for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    before = {p: sorted(os.listdir(p)) for p in (places["RUN"], places["FILES"])}
    result = rmt(*args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.stderr.splitlines() == [f"error: {substitute(message, places)}"], output
    assert result.returncode == code
    assert os.listdir(tmp_path) == [], "the command left files behind"
    assert {p: sorted(os.listdir(p)) for p in (places["RUN"], places["FILES"])} == before


def test_keys_the_code_is_gaining_are_accepted():
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir
    from rmt_cli.config_check import check

    overrides = ["curriculum.advance_at=null", "curriculum.stages=[{segments:1,steps:5,bptt_segments:1},"
                 "{segments:[1,2],steps:5,bptt_segments:null,facts_in_last:1,lr:1e-4,warmup_ratio:0}]"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    check(cfg, "train")


def markdown_table() -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| command | exit code | what you see |", "| --- | --: | --- |"]
    rows += [f"| `{cell(command)}` | {code} | error: {cell(message)} |" for command, code, message in CASES]
    return "\n".join([TABLE_START, *rows, TABLE_END])


def doc_with_table(doc: str) -> str:
    start, end = doc.index(TABLE_START), doc.index(TABLE_END) + len(TABLE_END)
    return doc[:start] + markdown_table() + doc[end:]


def test_docs_errors_md_shows_this_table():
    doc = DOC.read_text()
    assert doc == doc_with_table(doc), "docs/errors.md is out of date: run `python tests/test_bad_input.py`"


if __name__ == "__main__":
    DOC.write_text(doc_with_table(DOC.read_text()))
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
