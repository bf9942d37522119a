"""`rmt train`: a curriculum of growing segment counts, each stage starting from the previous stage's best weights.

Read top to bottom: build the experiment, then for every stage draw batches of fresh training samples, run them
through the recurrent engine with backpropagation through the segments, validate on a fixed set every
`eval_every` steps, keep the stage's best weights, and move on early once validation reaches `advance_at`.

Data-parallel (`trainer.devices=N` or torchrun, see distributed.py): the whole recurrent loop of a step is one
DistributedDataParallel forward; each rank reads its own slice of the global batch and of the validation set, and
every decision (stop, time limit, best checkpoint, next stage) is taken on numbers summed over all ranks.

This module is longer than most (about 360 lines) because the Trainer is kept whole: its stage loop, step and
validation read as one story. What it leans on lives elsewhere: curriculum.py (stages), train_state.py (what a
checkpoint restores), checkpoint_manager.py (bests, last-N), stopping.py (signals, time limit), batches.py.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.optim.lr_scheduler import LRScheduler

from rmt_cli import distributed, loggers, run_info, worker_errors
from rmt_cli.batches import BatchPlan, step_tokens
from rmt_cli.chains import ChainedRows, ChainPlan
from rmt_cli.checkpoint import CheckpointDoesNotFit, CheckpointNotFound, find_checkpoint, load_weights, read_meta
from rmt_cli.checkpoint_manager import CheckpointManager
from rmt_cli.curriculum import Stage, curriculum_cautions, curriculum_stages
from rmt_cli.engine import RecurrentMemory
from rmt_cli.errors import Interrupted, RuntimeFailure, UsageError
from rmt_cli.experiment import Experiment, build_experiment, refuse_compiled_hooked_memory
from rmt_cli.fused_blocks import fuse_blocks
from rmt_cli.fused_norms import fuse_rms_norms
from rmt_cli.inference import correct_answers, predict, to_device
from rmt_cli.lr_schedule import stage_schedule, steps_that_fit
from rmt_cli.memory_map import MemoryMap
from rmt_cli.metrics import Reporter
from rmt_cli.primed import PrimedPool
from rmt_cli.run_changes import check_same_run
from rmt_cli.samples import SampleFactory
from rmt_cli.stopping import Deadline, StopSignals
from rmt_cli.throughput import TrainingFlops
from rmt_cli.train_state import TrainState, current_rng, set_rng
from rmt_cli.weight_average import WeightAverage
from rmt_cli.working_copy import WorkingCopy

log = logging.getLogger(__name__)
SPIKE_WINDOW, SPIKE_HISTORY = 50, 10  # trainer.skip_spikes: the median of the last 50 steps' norms, from the 10th


def check_trainer(cfg, ranks: distributed.Ranks, stages: Sequence[Stage] = ()) -> None:
    """What config_check cannot know: the processes and GPUs of this job (the values are checked already)."""
    trainer = cfg.trainer
    devices = trainer.devices
    world = max(devices, ranks.world)
    batches = [("trainer.batch_size", trainer.batch_size),
               *((f"curriculum stage {stage.number} batch_size", stage.batch_size) for stage in stages)]
    for name, batch in batches:
        if batch % world:
            raise UsageError(f"{name}={batch} is the global batch and must divide evenly over {world} processes; "
                             f"use a multiple of {world}")
    if trainer.compute_dtype != "fp32" and world > 1:
        raise UsageError(f"trainer.compute_dtype={trainer.compute_dtype} trains on one process; with "
                         f"trainer.devices={devices} use trainer.compute_dtype=fp32")
    if trainer.reentrant_checkpoints and world > 1:
        raise UsageError(f"trainer.reentrant_checkpoints=true trains on one process; with trainer.devices={devices} "
                         "leave it false")
    if trainer.memory_map:
        check_memory_map(cfg, world, stages)
    if devices > 1 and distributed.wants_cuda(trainer.device) and devices > torch.cuda.device_count():
        raise UsageError(f"trainer.devices={devices} needs {devices} GPUs, {torch.cuda.device_count()} visible; "
                         f"lower trainer.devices or use trainer.device=cpu")


def check_memory_map(cfg, world: int, stages: Sequence[Stage]) -> None:
    """trainer.memory_map asks the memory for what a qa4 story's relations draw, or for a one-fact story's answer,
    from one process, on rows that each start from the initial memory (memory_map.py)."""
    name = f"trainer.memory_map={cfg.trainer.memory_map}"
    target, generator = cfg.trainer.memory_map_target, cfg.task.get("generator")
    if target == "answer" and (generator != "qa1" or cfg.task.get("facts_file")):
        raise UsageError(f"{name} with trainer.memory_map_target=answer asks for the answer one fact gives "
                         f"(task=memorize or detect); task={cfg.task.name} has stories of several facts: "
                         "set it to 0")
    if target != "answer" and generator != "qa4":
        raise UsageError(f"{name} reads the places a story's relations put around each place (task=reasoning); "
                         f"task={cfg.task.name} has other facts: set it to 0 or use "
                         "trainer.memory_map_target=answer (task=memorize or detect)")
    if world > 1:
        raise UsageError(f"{name} trains on one process; with trainer.devices={cfg.trainer.devices} set it to 0")
    carrying = [stage.number for stage in stages if stage.carry_memory or stage.chain_share or stage.noise_primed]
    if carrying:
        raise UsageError(f"{name}: curriculum stage {carrying[0]} starts rows from a memory of other samples "
                         "(carry_memory, chain_share or noise_primed), whose map is unknown; set it to 0 or drop those")


class InitFromUnusable(UsageError):
    """trainer.init_from (`source`) names no checkpoint, or one whose weights do not fit this model (`reason`)."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"trainer.init_from={source}: {reason}")


def train_from_config(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    ranks = distributed.environment()
    stages = curriculum_stages(cfg)
    check_trainer(cfg, ranks, stages)
    loggers.chosen(cfg)
    devices = cfg.trainer.devices
    if devices > 1 and ranks.world == 1:  # start the workers; each comes back here as one rank
        distributed.launch_workers(devices, [*HydraConfig.get().overrides.task, f"hydra.run.dir={run_dir}"])
        return
    distributed.join(ranks)
    try:
        experiment = build_experiment(cfg, distributed.device_name(cfg.trainer.device, ranks),
                                      with_training_data=True, seed=cfg.seed)
        if ranks.rank:  # same initial weights everywhere, but each rank its own dropout masks
            torch.manual_seed(cfg.seed + ranks.rank)
        Trainer(cfg, experiment, stages, run_dir, ranks).run()
        worker_errors.record_finished()
        distributed.barrier()  # no rank closes its connections while a peer may still be reading from them
    finally:
        distributed.leave()


def build_optimizer(model: RecurrentMemory, lr: float, weight_decay: float, device: torch.device,
                    fused: bool, memory_lr_scale: float = 1.0, aids: Sequence[torch.nn.Parameter] = ()
                    ) -> torch.optim.AdamW:
    """AdamW; on CUDA with `fused`, its fused kernel (one launch for all parameters, the same update rule).

    memory_lr_scale: the memory's own parameters (the initial memory, the write gate or scale) learn at this
    multiple of `lr`, in a second parameter group (only when it is not 1, so that runs saved with one group
    resume): a gate that starts at 0.88 must learn to close, and at a backbone's lr of 2e-5 Adam moves it by
    about lr per weight and step. `aids`: parameters trained beside the model and not saved with it (the
    trainer.memory_map layer), in a last group at `lr`."""
    groups: list[dict] = [{"params": list(model.parameters())}]
    if memory_lr_scale != 1.0:
        memory = model.memory_parameters()
        chosen = {id(p) for p in memory}
        groups = [{"params": [p for p in model.parameters() if id(p) not in chosen]},
                  {"params": memory, "lr": lr * memory_lr_scale}]
    if aids:
        groups.append({"params": list(aids)})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay,
                             fused=True if fused and device.type == "cuda" else None)


@dataclass
class StageRun:
    """One stage in training: its optimizer and learning-rate schedule, its fixed validation set and, with
    trainer.ema_decay, the average of its weights that validation reads."""

    stage: Stage
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    val_data: SampleFactory  # held-out noise in segments of the stage's length
    val_samples: list
    average: WeightAverage | None = None
    memory_map: MemoryMap | None = None  # trainer.memory_map's layer (the Trainer's), saved with the optimizer
    warmup_steps: int = 0
    first_step: int = 1  # the first step this process takes in the stage (later than 1 after a resume)
    started: float = field(default_factory=time.perf_counter)
    validation_seconds: float = 0.0  # how long its last validation took
    paced_from: tuple[float, int] | None = None  # (clock, step) where trainer.fit_time_limit first measured the pace

    def seconds_per_step(self, step: int) -> float:
        """The stage's pace in this process up to step `step`, its validations included: since the pace was first
        measured, once a step has been taken after it, so that the stage's start (its data built, the first steps'
        allocations) no longer counts; before that, since the stage started."""
        if self.paced_from is not None and step > self.paced_from[1]:
            since, before = self.paced_from
        else:
            since, before = self.started, self.first_step - 1
        return (time.perf_counter() - since) / max(1, step - before)

    def measure_pace(self, step: int) -> float:
        """seconds_per_step, marking the first measurement as where later ones start from."""
        pace = self.seconds_per_step(step)
        if self.paced_from is None:
            self.paced_from = (time.perf_counter(), step)
        return pace

    def optimization_state(self) -> dict:
        """What a resume point stores of it besides the TrainState."""
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.average is not None:
            state["weight_average"] = self.average.state_dict()
        if self.memory_map is not None:
            state["memory_map"] = self.memory_map.state_dict()
        return state

    def load_optimization_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.average is not None and "weight_average" in state:  # absent: the run had no average (resume=force)
            self.average.load_state_dict(state["weight_average"])
        if self.memory_map is not None and "memory_map" in state:  # absent: the run had none (resume=force)
            self.memory_map.load_state_dict(state["memory_map"])

    def validated_weights(self):
        """The weights validation reads and a stage's best checkpoint keeps: the average, else the model's own."""
        return nullcontext() if self.average is None else self.average.applied()


NO_OPTIMIZATION: dict[str, dict] = {"optimizer": {}, "scheduler": {}}  # the resume point of a finished curriculum


class Trainer:
    """Runs the curriculum; a resume checkpoint `checkpoints/last-N` (weights, optimizer, scheduler and the
    TrainState: stage, step, data position N, RNG) is written after every validation, so the same command on the
    same run folder resumes exactly."""

    def __init__(self, cfg, experiment: Experiment, stages: list[Stage], run_dir: Path,
                 ranks: distributed.Ranks = distributed.Ranks()):
        self.cfg, self.experiment, self.stages, self.run_dir, self.ranks = cfg, experiment, stages, run_dir, ranks
        self.model = experiment.model  # the module itself: weights are saved, loaded and evaluated through it
        self.model.prefix_dtype = {"fp32": None, "bf16": torch.bfloat16}[cfg.trainer.prefix_dtype]
        self.model.reentrant_checkpoints = cfg.trainer.reentrant_checkpoints
        if cfg.trainer.fused_norms and not fuse_rms_norms(self.model.backbone):
            raise UsageError(f"trainer.fused_norms=true needs a Llama-family decoder (RMSNorm layers); "
                             f"{type(self.model.backbone).__name__} has none: leave it false")
        if cfg.trainer.fused_blocks and not fuse_blocks(self.model.backbone, live=True):
            raise UsageError(f"trainer.fused_blocks=true needs a BERT-family encoder; "
                             f"{type(self.model.backbone).__name__} has other blocks: leave it false")
        if cfg.trainer.compile_blocks:  # before the working copy, which then copies compiled (and fused) blocks
            refuse_compiled_hooked_memory(self.model, "trainer.compile_blocks=true")
            self.model.compile_blocks()
        # trainer.compute_dtype=bf16: steps run on a bf16 copy of the model (working_copy.py)
        self.working_copy = WorkingCopy(self.model) if cfg.trainer.compute_dtype == "bf16" else None
        self.step_model: torch.nn.Module = self.model  # what a training step calls: the model, or its DDP wrapper
        if ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            device = experiment.device
            # Truncated BPTT (and a batch whose every row starts from a carried memory) leaves the initial memory
            # out of some steps' graphs; DDP must then look for it.
            self.step_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=any(stage.bptt_segments is not None or stage.carry_memory
                                           or stage.chain_share or stage.noise_primed for stage in stages))
        self.info = run_info.collect(experiment.device)
        if ranks.writer:
            run_info.write(run_dir, {**self.info, "finished": False})
        self.metrics = loggers.open_metrics(cfg, run_dir, [s.steps for s in stages], self.info,
                                            enabled=ranks.writer)
        self.flops = {length: TrainingFlops(self.model.backbone.config, length, experiment.device, ranks.world)
                      for length in {stage.segment_length for stage in stages}}  # per segment length
        self.reporter = Reporter(total_steps=sum(s.steps for s in stages), quiet=not ranks.writer)
        self.checkpoints = CheckpointManager(run_dir / "checkpoints", cfg.trainer.keep_last, ranks.writer)
        self.state = TrainState()
        self.resumed_optimization: dict = {}  # the resume point's state: StageRun reads its own part of it
        self.stop_signals = StopSignals(self.reporter.note, abort_on_second=ranks.world == 1)
        self.deadline: Deadline  # the time limit counts from the start of run()
        self.prefetched: tuple | None = None  # ((stage, position), host_batch(stage, position)), built a step ahead
        self.carried: torch.Tensor | None = None  # stage.carry_memory: the memory this rank's last batch ended with
        self.chains: ChainedRows | None = None  # stage.chain_share: the current stage's chained rows (chains.py)
        self.primed: PrimedPool | None = None  # stage.noise_primed: the current stage's pool (primed.py)
        self.stopped_inside: dict | None = None  # the final table's row of the stage the time limit stopped in
        self.memory_map: MemoryMap | None = None  # trainer.memory_map's layer, trained beside the model
        if cfg.trainer.memory_map:
            self.memory_map = MemoryMap(self.model.memory_size, self.model.initial_memory.shape[-1],
                                        cfg.trainer.memory_map_target, cfg.trainer.memory_map_hidden,
                                        labels=len(experiment.task.labels))
            self.memory_map.to(experiment.device)
        self.last_map_loss: float | None = None  # the last step's memory_map loss, for metrics.jsonl

    def run(self) -> None:
        started = time.perf_counter()
        self.deadline = Deadline(self.cfg.trainer.time_limit_minutes)
        if not self.resume():
            return
        if self.ranks.writer:
            OmegaConf.save(self.cfg, self.run_dir / "config.yaml", resolve=True)
        with self.reporter, self.metrics, self.stop_signals:
            assert self.experiment.train_data is not None, "a training run builds its training data"
            self.reporter.note(f"noise: training {self.experiment.train_data.corpus.describe()}; validation and test "
                               f"{self.experiment.eval_data.corpus.describe()}")
            for caution in curriculum_cautions(self.stages):
                self.reporter.note(caution)
            if self.cfg.trainer.fit_time_limit and self.deadline.minutes is None:
                self.reporter.note("trainer.fit_time_limit=true does nothing without trainer.time_limit_minutes: "
                                   "the last stage runs all its steps")
            completed = self.run_stages()
        self.finish(completed, time.perf_counter() - started)

    def run_stages(self) -> bool:
        """The stages not done yet; False when the time limit stopped the run first."""
        for stage in (stage for stage in self.stages if self.state.pending(stage.number)):
            if distributed.any_rank([self.deadline.passed()], self.experiment.device)[0]:
                self.reporter.note(f"time limit of {self.deadline.minutes} minutes reached before stage "
                                   f"{stage.number}; rerun the same command to continue")
                return False
            if not self.run_stage(stage):
                return False
        return True

    def run_stage(self, stage: Stage) -> bool:
        """Train one stage; False when the time limit stopped it, at a resume point that a rerun continues from.

        A stop (signal or time limit) comes after the step's validation, so that the rerun, which continues with the
        next step, misses none; the time limit also validates a step that is not due for it, so that no trained step
        is lost to the stage's choice of weights."""
        run = self.start_stage(stage)
        self.model.train()
        while self.state.step < run.stage.steps:  # run.stage.steps: fewer once cut to the time limit
            self.state.step += 1
            self.train_step(run)
            stop_requested, out_of_time = distributed.any_rank([self.stop_signals.received is not None,
                                                                self.deadline.passed()], self.experiment.device)
            if self.validation_due(run.stage) and self.validate_and_save(run):
                return True  # the stage is done
            if stop_requested:
                self.stop_on_signal(run)
            if out_of_time:
                # The steps since the last validation count too: validated now, they may be the stage's best.
                if not self.validation_due(run.stage) and self.validate_and_save(run):
                    return True  # and that validation ended the stage
                self.stop_at_time_limit(run)
                return False
        return True

    def start_stage(self, stage: Stage) -> StageRun:
        """Continue the stage the run stopped inside, or begin it from the previous stage's best weights."""
        continuing = self.state.inside(stage.number)
        if not continuing:
            self.state.begin_stage(stage.number)
            if stage.number > 1:
                self.checkpoints.load_best(stage.number - 1, self.model)
        trainer = self.cfg.trainer
        aids = [] if self.memory_map is None else list(self.memory_map.parameters())
        optimizer = build_optimizer(self.model, stage.lr, trainer.weight_decay, self.experiment.device,
                                    fused=trainer.fused_adamw, memory_lr_scale=trainer.memory_lr_scale, aids=aids)
        warmup_steps = int(stage.warmup_ratio * stage.steps)  # a whole number of steps: the fraction rounded down
        if continuing and self.state.stage_steps is not None:  # cut to the time limit before the run stopped
            stage = replace(stage, steps=self.state.stage_steps)
        scheduler = stage_schedule(trainer.scheduler, optimizer, warmup_steps, stage.steps)
        val_data = self.experiment.data_of_length(stage.segment_length)[1]
        val_samples = val_data.sample_set("validation", self.cfg.task.eval_seed, stage.validation_segments,
                                          stage.val_samples)
        average = None if stage.ema_decay is None else WeightAverage(self.model, stage.ema_decay)
        self.carried = None
        run = StageRun(stage, optimizer, scheduler, val_data, val_samples, average, self.memory_map, warmup_steps,
                       first_step=self.state.step + 1)
        if continuing:
            run.load_optimization_state(self.resumed_optimization)
        return run

    def finish(self, completed: bool, seconds: float) -> None:
        """The summary line; for a completed curriculum the final resume point, which then keeps that line when the
        finished run is started again."""
        self.metrics.write(kind="summary", completed=completed,
                           best_val_accuracy={row["stage"]: row["best_val_accuracy"] for row in self.state.summary})
        if completed:
            self.state.finish(self.stages[-1].number)
            self.save_resume_point(None)
            if self.ranks.writer:
                run_info.write(self.run_dir, {**self.info, "finished": True})
        if self.ranks.writer:
            rows = self.state.summary + ([] if completed or self.stopped_inside is None else [self.stopped_inside])
            self.reporter.final_table(rows, seconds, self.run_dir, completed)

    def validation_due(self, stage: Stage) -> bool:
        step = self.state.step
        return step % stage.eval_every == 0 or step == stage.steps

    def validate_and_save(self, run: StageRun) -> bool:
        """Validate, keep the stage's best weights, write a resume point; True once the stage is done.

        A done stage's row joins the summary before the resume point that marks it done."""
        stage, step = run.stage, self.state.step
        validation_started = time.perf_counter()
        with run.validated_weights():
            val = self.validate(run.val_samples, run.val_data)
            run.validation_seconds = time.perf_counter() - validation_started
            if val >= self.state.best_accuracy:  # a tie keeps the later, longer-trained weights
                self.state.best_accuracy = val
                self.checkpoints.save_best(stage.number, self.model, self.meta(stage, step, val))
        self.metrics.write(kind="val", stage=stage.number, step=step, segments=stage.validation_segments,
                           val_accuracy=val)
        positions = "" if stage.segment_length == self.cfg.segment.length else f" of {stage.segment_length} positions"
        self.reporter.note(f"stage {stage.number} step {step}: validation accuracy {val:.2%} "
                           f"on {len(run.val_samples)} samples of {stage.validation_segments} segments{positions}")
        stage = self.fit_to_time_limit(run)
        done = (stage.advance_at is not None and val >= stage.advance_at) or step == stage.steps
        if done:
            self.state.end_stage(self.summary_row(run, step))
        elif stage.revert_drop is not None and val < self.state.best_accuracy - stage.revert_drop:
            self.revert_to_best(run, val, stage.revert_drop)
        self.save_resume_point(run)
        return done

    def revert_to_best(self, run: StageRun, val: float, drop: float) -> None:
        """stage.revert_drop: the weights back to the stage's best (the average, with one: that is what its best
        checkpoint keeps), the average begun again from them and the optimizer's moments dropped, which had carried
        the weights down; the schedule goes on. Every rank alike: the validation it follows is summed over ranks."""
        stage = run.stage
        self.checkpoints.load_best(stage.number, self.model)
        if run.average is not None:
            run.average.restart()
        run.optimizer.state.clear()  # AdamW begins each weight's moments again at its next step
        self.metrics.write(kind="revert", stage=stage.number, step=self.state.step, val_accuracy=val,
                           best_val_accuracy=self.state.best_accuracy)
        self.reporter.note(f"stage {stage.number} step {self.state.step}: validation {val:.2%} is more than "
                           f"{100 * drop:g} points below the stage's best "
                           f"({self.state.best_accuracy:.2%}); training goes on from those weights (revert_drop)")

    def fit_to_time_limit(self, run: StageRun) -> Stage:
        """With trainer.fit_time_limit, the last stage fitted to the steps the time left holds at its pace
        (lr_schedule.py), at most its planned steps, its schedule rebuilt over them; `run`'s stage, refitted or not."""
        seconds_left = self.deadline.seconds_left()
        if not self.cfg.trainer.fit_time_limit or seconds_left is None or run.stage.number != self.stages[-1].number:
            return run.stage
        step, ends_at, planned = self.state.step, run.stage.steps, self.stages[-1].steps
        if step >= ends_at:  # the schedule has come down to its end: the stage is done
            return run.stage
        pace = run.measure_pace(step)
        fitting = min(distributed.gather(steps_that_fit(step, planned, pace, seconds_left,
                                                        reserve=run.validation_seconds)))  # every rank alike
        if fitting != ends_at:
            run.stage = replace(run.stage, steps=fitting)
            run.scheduler = stage_schedule(self.cfg.trainer.scheduler, run.optimizer, run.warmup_steps, fitting,
                                           taken=step)
            self.state.stage_steps = fitting
            self.reporter.add_steps(fitting - ends_at)
            self.metrics.write(kind="fit", stage=run.stage.number, step=step, steps=fitting, planned=planned)
            self.reporter.note(f"stage {run.stage.number}: the time limit holds {fitting - step} more steps at "
                               f"{pace:.2f} s a step; its schedule now ends at step {fitting} (of {planned} planned)")
        return run.stage

    def summary_row(self, run: StageRun, steps: int | str) -> dict:
        """The final table's row of `run`'s stage after `steps` (a number, or "taken of planned" for a stage the
        time limit stopped)."""
        return {"stage": run.stage.number, "segments": run.stage.label, "steps": steps,
                "best_val_accuracy": self.state.best_accuracy,
                "seconds": round(time.perf_counter() - run.started, 1)}

    def stop_on_signal(self, run: StageRun) -> NoReturn:
        saved = self.save_resume_point(run)
        self.stop_signals.pass_on()
        raise Interrupted(f"stopped at stage {run.stage.number} step {self.state.step}; saved {saved} - "
                          "run the same command again to resume")

    def stop_at_time_limit(self, run: StageRun) -> None:
        """Save where the stage stands, not done: a rerun of the same command continues it, as after a signal."""
        saved = self.save_resume_point(run)
        self.stopped_inside = self.summary_row(run, f"{self.state.step} of {run.stage.steps}")
        self.reporter.note(f"time limit of {self.deadline.minutes} minutes reached at stage {run.stage.number} "
                           f"step {self.state.step}; saved {saved} - rerun the same command to continue")

    def validate(self, samples: list, data: SampleFactory) -> float:
        """Accuracy on the stage's validation set; each rank predicts its own slice, the counts are summed."""
        share = samples[self.ranks.rank::self.ranks.world]
        correct = 0
        if share:
            predictions = predict(self.experiment, data, share, self.cfg.trainer.eval_batch_size)
            correct = correct_answers(predictions, share)
        return distributed.total([correct], self.experiment.device)[0] / len(samples)

    def save_resume_point(self, run: StageRun | None) -> Path:
        """Write the resume checkpoint of the current state (rank 0; every rank must call it, as it gathers their
        RNG states); where it lies."""
        self.state.rank_rng = distributed.gather(current_rng())
        self.state.metrics_lines = self.metrics.lines
        optimization = NO_OPTIMIZATION if run is None else run.optimization_state()
        stage = self.stages[self.state.stage - 1]
        return self.checkpoints.save_resume_point(self.state.next_sample, self.model,
                                                  self.meta(stage, self.state.step, self.state.best_accuracy),
                                                  {**self.state.state_dict(), **optimization})

    def resume(self) -> bool:
        """Continue from the newest sound resume point of this run folder, if any: weights, TrainState, metrics,
        RNG. False when the run has finished its curriculum already: nothing is left to do."""
        folder = self.checkpoints.newest_resume_point(self.reporter.note)
        if folder is None:  # whatever a run killed before its first resume point left is dropped
            self.metrics.truncate(0)
            self.checkpoints.drop_bests()
            self.start_from(self.cfg.trainer.init_from)
            return True
        check_same_run(read_meta(folder)["config"], self.cfg, self.run_dir)
        saved = self.checkpoints.load_resume_point(folder, self.model)
        self.state.load_state_dict(saved)
        self.resumed_optimization = saved
        self.metrics.truncate(self.state.metrics_lines)
        set_rng(self.state.rng_of(self.ranks.rank, self.ranks.world))
        if not self.state.finished:
            self.reporter.note(f"resuming {self.run_dir} at stage {self.state.stage} step {self.state.step}")
            return True
        if self.state.stage >= len(self.stages):
            self.reporter.note(f"{self.run_dir} has finished its curriculum already; nothing to resume")
            return False
        self.reporter.note(f"continuing {self.run_dir} into stage {self.state.stage + 1}, added to its curriculum")
        self.metrics.truncate(self.metrics.lines - 1)  # the summary line of the shorter curriculum, written last
        return True

    def start_from(self, source: str | None) -> None:
        """A new run with trainer.init_from starts from that run's (or checkpoint's) weights, on every rank alike."""
        if source is None:
            return
        try:
            folder = find_checkpoint(Path(source).expanduser())
            # a run with memory.associative may start from one without: its projections start fresh
            load_weights(folder, self.model, fresh=("associative.",))
        except (CheckpointNotFound, CheckpointDoesNotFit) as error:
            raise InitFromUnusable(source, str(error)) from None
        self.reporter.note(f"starting from the weights of {folder}")

    def train_step(self, run: StageRun) -> None:
        """One optimizer step on the global batch, reported on the console and in metrics.jsonl."""
        stage, step, scheduler = run.stage, self.state.step, run.scheduler
        tick = time.perf_counter()
        loss, tokens, grad_norm = self.optimizer_step(run)
        tokens_per_s = tokens / (time.perf_counter() - tick)
        self.reporter.advance(f"stage {stage.number} ({stage.label} seg) step {step}/{stage.steps} "
                              f"loss {loss:.4f} lr {scheduler.get_last_lr()[0]:.2e} {tokens_per_s:,.0f} tok/s")
        if step % self.cfg.trainer.log_every == 0 or step == 1:
            flops = self.flops[stage.segment_length]
            mapped = {} if self.last_map_loss is None else {"map_loss": self.last_map_loss}
            self.metrics.write(kind="train", stage=stage.number, step=step, segments=stage.label, loss=loss, **mapped,
                               lr=scheduler.get_last_lr()[0], grad_norm=grad_norm, **self.spike_fields(),
                               tokens_per_s=round(tokens_per_s, 1), **flops.fields(tokens_per_s),
                               **loggers.peak_gpu_memory(self.experiment.device))

    def spike_fields(self) -> dict:
        return {} if self.cfg.trainer.skip_spikes is None else {"skipped_steps": self.state.skipped_steps}

    def optimizer_step(self, run: StageRun) -> tuple[float, int, float]:
        """Returns the global batch's mean loss, the tokens all ranks read and the gradient norm before clipping."""
        run.optimizer.zero_grad(set_to_none=True)
        loss, tokens = self.accumulate_gradients(run.stage, self.state.step)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.trainer.grad_clip)
        if self.cfg.trainer.skip_spikes is None or self.admits(grad_norm.item()):
            run.optimizer.step()
            if run.average is not None:
                run.average.update()
        run.scheduler.step()
        return loss, tokens, grad_norm.item()

    def admits(self, grad_norm: float) -> bool:
        """trainer.skip_spikes: False for a gradient norm (before clipping) above that many times the median of the
        stage's recent ones, or not finite: the step is skipped, so that neither the weights nor the optimizer's
        moments take it in (a clipped spike still moves Adam's weights by a full step and its momentum for several
        more). The norms of the steps taken make the median: the stage's last SPIKE_WINDOW, once there are
        SPIKE_HISTORY of them."""
        recent = self.state.recent_grad_norms
        median = statistics.median(recent) if len(recent) >= SPIKE_HISTORY else math.inf
        if not math.isfinite(grad_norm) or grad_norm > self.cfg.trainer.skip_spikes * median:
            self.state.skipped_steps += 1
            times = (f", {grad_norm / median:.0f}× the median of the last {len(recent)} steps"
                     if math.isfinite(grad_norm) and math.isfinite(median) else "")
            self.reporter.note(f"stage {self.state.stage} step {self.state.step}: gradient norm "
                               f"{grad_norm:.3g}{times}; step skipped")
            return False
        recent.append(grad_norm)
        del recent[:-SPIKE_WINDOW]
        return True

    def accumulate_gradients(self, stage: Stage, step: int) -> tuple[float, int]:
        """Forward and backward of this rank's slice of the next global batch (all of it for a lone process).

        Rank r reads samples state.next_sample + r * local + i, so N ranks together read exactly the samples one
        process would; DDP averages the gradients of equal slices, which equals the gradient of the global batch's
        mean loss.
        """
        experiment = self.experiment
        plan, host_steps = self.host_batch(stage, self.state.next_sample, step)
        self.state.next_sample += stage.batch_size
        device = experiment.device
        steps = [to_device(tokens, device) for tokens in host_steps]
        labels = to_device(plan.labels(), device)
        model, autocast = self.step_model, experiment.autocast()
        if self.working_copy is not None:
            model, autocast = self.working_copy.refreshed(), nullcontext()
        chains = self.chained_rows(stage)
        if chains is not None:
            carried = chains.carried(plan, step, labels)
        elif stage.noise_primed:
            noise = experiment.data_of_length(stage.segment_length)[0]
            carried = self.primed_pool(stage).carried(self.model, noise, step, device, experiment.autocast())
        else:
            carried = self.carried_rows(stage, labels.shape[0], device)
        written: list[tuple[int, torch.Tensor]] = []  # the memories each step wrote, for trainer.memory_map
        hook = None if self.memory_map is None else lambda t, memory: written.append((t, memory))
        with autocast:
            loss, out = experiment.head.loss(model, steps, labels, grad_steps=stage.bptt_segments,
                                             checkpoint_segments=stage.checkpoint_segments, carried=carried,
                                             memory_hook=hook)
        objective, map_loss = loss, None
        if self.memory_map is not None:
            map_loss = self.memory_map.loss(written, plan)
            objective = loss + self.cfg.trainer.memory_map * map_loss
        if stage.carry_memory:
            self.carried = out.memory.detach()
        if chains is not None:
            chains.keep(plan, out.memory_before_last)
        objective.backward()
        if self.working_copy is not None:
            self.working_copy.pass_gradients()
        if step < stage.steps:  # the device still runs this backward: assemble the next batch meanwhile
            self.prefetched = ((stage.number, self.state.next_sample),
                               self.host_batch(stage, self.state.next_sample, step + 1))
        if map_loss is not None:  # read once the backward is queued, as the loss below
            self.last_map_loss = map_loss.item()
        loss_sum, token_sum = distributed.total([loss.item(), float(plan.counts.sum())], device)
        loss_value = loss_sum / self.ranks.world
        if not math.isfinite(loss_value):
            saved = self.checkpoints.resume_points()
            kept = f"the last good state is {saved[0]} (rerun resumes from it)" if saved else "nothing was saved yet"
            raise RuntimeFailure(f"loss became {loss_value} at stage {stage.number} step {step}; {kept}; "
                                 "lower trainer.lr")
        return loss_value, int(token_sum) * stage.segment_length  # total() sums in floating point

    def carried_rows(self, stage: Stage, rows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """stage.carry_memory = q: a share q of the batch's rows (the same rows all stage, drawn from the run's seed
        and the stage) start every step from the memory their row ended the step before with (detached: no gradient
        reaches back); the other rows start from the initial memory. So a carrying row's memory has read every
        sample of its row since the stage began, hundreds of steps of tens of segments (other facts and questions
        among them), as a memory has deep into a long test input, where no training input of tens of segments takes
        it from the initial memory. None on a stage's first step and after a resume (the memory is not saved)."""
        if not stage.carry_memory or self.carried is None or self.carried.shape[0] != rows:
            return None
        order = np.random.default_rng([self.cfg.seed, stage.number, self.ranks.rank]).permutation(rows)
        return torch.from_numpy(order < round(stage.carry_memory * rows)).to(device), self.carried

    def primed_pool(self, stage: Stage) -> PrimedPool:
        """The stage's pool of noise-primed memories (stage.noise_primed, primed.py), begun at its first use in the
        stage."""
        if self.primed is None or self.primed.stage != stage.number:
            self.primed = PrimedPool(self.cfg.seed, stage.number, self.ranks.rank, stage.batch_size // self.ranks.world,
                                     stage.noise_primed, stage.primed_segments, stage.steps)
        return self.primed

    def chained_rows(self, stage: Stage) -> ChainedRows | None:
        """The stage's chained rows (stage.chain_share, chains.py), begun at its first use in the stage."""
        if not stage.chain_share:
            return None
        if self.chains is None or self.chains.plan.stage != stage.number:
            local = stage.batch_size // self.ranks.world
            self.chains = ChainedRows(ChainPlan(self.cfg.seed, stage.number, self.ranks.rank, local,
                                                stage.chain_share, stage.chain_steps, stage.steps))
        return self.chains

    def host_batch(self, stage: Stage, position: int, step: int) -> tuple[BatchPlan, list]:
        """This rank's slice of the global batch of the stage's `step` that starts at training sample `position`:
        its plan and step tokens, on the host. Samples (and a chained row's parts) are pure functions of (seed, index),
        so a slice built ahead (`prefetched`) equals one built now."""
        if self.prefetched is not None and self.prefetched[0] == (stage.number, position):
            return self.prefetched[1]
        data = self.experiment.data_of_length(stage.segment_length)[0]
        seed, batch = self.cfg.seed, stage.batch_size
        local = batch // self.ranks.world
        first = position + self.ranks.rank * local
        counts = stage.segment_counts(seed, position)
        samples = [data.training_sample(seed, first + i, counts, stage.mix) for i in range(local)]
        chains = self.chained_rows(stage)
        if chains is not None:  # a chained row's fact comes from the sample drawn for it `back` batches before
            samples = chains.parts(samples, step, lambda row, back: data.training_sample(
                seed, first - back * batch + row, stage.segment_counts(seed, position - back * batch), stage.mix))
        plan = BatchPlan.right_aligned(samples)
        return plan, [step_tokens(data, plan, t) for t in range(plan.n_steps)]

    def meta(self, stage: Stage, step: int, val: float) -> dict:
        return {"config": OmegaConf.to_container(self.cfg, resolve=True), "stage": stage.number, "step": step,
                "val_accuracy": val, "max_segments": stage.segments[1], "labels": list(self.experiment.task.labels)}
