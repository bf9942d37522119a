"""`rmt train`: a curriculum of growing segment counts, each stage starting from the previous stage's best weights.

Read top to bottom: build the experiment, then for every stage draw batches of fresh training samples, run them
through the recurrent engine with backpropagation through the segments, validate on a fixed set every
`eval_every` steps, keep the stage's best weights, and move on early once validation reaches `advance_at`.

Data-parallel (`trainer.devices=N` or torchrun, see distributed.py): the whole recurrent loop of a step is one
DistributedDataParallel forward; each rank reads its own slice of the global batch and of the validation set, and
every decision (stop, time limit, best checkpoint, next stage) is taken on numbers summed over all ranks.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import get_scheduler

from rmt_cli import distributed, loggers, run_info
from rmt_cli.checkpoint import (latest_resume_point, load_trainer_state, load_weights, read_meta, resume_folder,
                                 resume_points, save_checkpoint, save_resume_point, tidy)
from rmt_cli.errors import Interrupted, RuntimeFailure, UsageError
from rmt_cli.experiment import Experiment, build_experiment
from rmt_cli.inference import correct_answers, predict, to_device
from rmt_cli.metrics import Reporter
from rmt_cli.run_changes import check_same_run
from rmt_cli.samples import BatchPlan, step_tokens
from rmt_cli.throughput import TrainingFlops

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    number: int
    segments: tuple[int, int]  # segment counts drawn uniformly per sample from [lo, hi]
    steps: int
    lr: float
    warmup_ratio: float
    bptt_segments: int | None = None  # truncated BPTT window of this stage (None: all segments)
    facts_in_last: int | None = None  # training samples place their facts in their last k segments (None: anywhere)
    val_segments: int | None = None  # validation samples' length (None: the stage's longest training length)
    advance_at: float | None = None  # leave the stage once validation reaches this (None: run all its steps)

    @property
    def validation_segments(self) -> int:
        return self.segments[1] if self.val_segments is None else self.val_segments

    @property
    def label(self) -> str:
        lo, hi = self.segments
        return str(hi) if lo == hi else f"{lo}-{hi}"


def curriculum_stages(cfg) -> list[Stage]:
    """The curriculum as Stages; its values were checked when the config was composed (config_check.py)."""
    stages = []
    for number, stage in enumerate(cfg.curriculum.stages, start=1):
        segments = stage.segments
        lo, hi = (int(segments), int(segments)) if isinstance(segments, int) else (int(segments[0]), int(segments[1]))
        bptt = stage.get("bptt_segments", cfg.trainer.bptt_segments)
        facts_in_last, val_segments = stage.get("facts_in_last"), stage.get("val_segments")
        advance_at = setting(stage, "advance_at", cfg.curriculum.get("advance_at"))
        stages.append(Stage(number, (lo, hi), int(stage.steps), float(setting(stage, "lr", cfg.trainer.lr)),
                            float(setting(stage, "warmup_ratio", cfg.trainer.warmup_ratio)),
                            None if bptt is None else int(bptt),
                            None if facts_in_last is None else int(facts_in_last),
                            None if val_segments is None else int(val_segments),
                            None if advance_at is None else float(advance_at)))
    return stages


def setting(stage, key: str, default):
    """A stage's own value of `key`, else the trainer's (an explicit 0 counts, unlike an `or` fallback)."""
    value = stage.get(key)
    return default if value is None else value


def check_trainer(cfg, ranks: distributed.Ranks) -> None:
    """What config_check cannot know: the processes and GPUs of this job (the values are checked already)."""
    trainer = cfg.trainer
    devices = int(trainer.get("devices", 1))
    world = max(devices, ranks.world)
    if int(trainer.batch_size) % world:
        raise UsageError(f"trainer.batch_size={trainer.batch_size} is the global batch and must divide evenly over "
                         f"{world} processes; use a multiple of {world}")
    if devices > 1 and distributed.wants_cuda(str(trainer.device)) and devices > torch.cuda.device_count():
        raise UsageError(f"trainer.devices={devices} needs {devices} GPUs, {torch.cuda.device_count()} visible; "
                         f"lower trainer.devices or use trainer.device=cpu")


def train_from_config(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    ranks = distributed.environment()
    check_trainer(cfg, ranks)
    loggers.chosen(cfg)
    stages = curriculum_stages(cfg)
    devices = int(cfg.trainer.get("devices", 1))
    if devices > 1 and ranks.world == 1:  # start the workers; each comes back here as one rank
        distributed.launch_workers(devices, [*HydraConfig.get().overrides.task, f"hydra.run.dir={run_dir}"])
        return
    distributed.join(ranks)
    try:
        experiment = build_experiment(cfg, distributed.device_name(str(cfg.trainer.device), ranks),
                                      with_training_data=True)
        if ranks.rank:  # same initial weights everywhere, but each rank its own dropout masks
            torch.manual_seed(int(cfg.seed) + ranks.rank)
        Trainer(cfg, experiment, stages, run_dir, ranks).run()
    finally:
        distributed.leave()


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device,
                    fused: bool) -> torch.optim.AdamW:
    """AdamW; on CUDA with `fused`, its fused kernel (one launch for all parameters, the same update rule)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay,
                             fused=True if fused and device.type == "cuda" else None)


class Trainer:
    """Runs the curriculum; a resume checkpoint `checkpoints/last-N` (weights, optimizer, scheduler, RNG, stage,
    step, data position N) is written after every validation, so the same command on the same run folder resumes
    exactly."""

    def __init__(self, cfg, experiment: Experiment, stages: list[Stage], run_dir: Path,
                 ranks: distributed.Ranks = distributed.Ranks()):
        self.cfg, self.experiment, self.stages, self.run_dir, self.ranks = cfg, experiment, stages, run_dir, ranks
        self.model = experiment.model  # the module itself: weights are saved, loaded and evaluated through it
        self.step_model: torch.nn.Module = self.model  # what a training step calls: the model, or its DDP wrapper
        if ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            device = experiment.device
            # Truncated BPTT leaves the initial memory out of some steps' graphs; DDP must then look for it.
            self.step_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=any(stage.bptt_segments is not None for stage in stages))
        self.info = run_info.collect(experiment.device)
        if ranks.writer:
            run_info.write(run_dir, {**self.info, "finished": False})
        self.metrics = loggers.open_metrics(cfg, run_dir, [s.steps for s in stages], self.info,
                                            enabled=ranks.writer)
        self.flops = TrainingFlops(self.model.backbone.config, int(cfg.segment.length), experiment.device,
                                   ranks.world)
        self.reporter = Reporter(total_steps=sum(s.steps for s in stages), quiet=not ranks.writer)
        self.checkpoints = run_dir / "checkpoints"
        self.next_sample = 0  # index of the next training sample (of the global batch): the data position
        self.prefetched: tuple | None = None  # ((stage, position), host_batch(stage, position)), built a step ahead
        self.summary: list[dict] = []
        self.stop_signal: int | None = None  # the signal that asked this run to stop, once one has
        self.previous_handlers: dict = {}

    def run(self) -> None:
        started = time.perf_counter()
        limit = self.cfg.trainer.time_limit_minutes
        self.deadline = None if limit is None else started + 60 * float(limit)
        state = self.restore()
        if state is not None and state["finished"]:
            if state["stage"] >= len(self.stages):
                self.reporter.note(f"{self.run_dir} has finished its curriculum already; nothing to resume")
                return
            self.reporter.note(f"continuing {self.run_dir} into stage {state['stage'] + 1}, added to its curriculum")
            self.metrics.truncate(self.metrics.lines - 1)  # the summary line of the shorter curriculum, written last
        if self.ranks.writer:
            OmegaConf.save(self.cfg, self.run_dir / "config.yaml", resolve=True)
        completed = True
        with self.reporter, self.metrics, self.stop_on_signals():
            for stage in self.stages:
                if state is not None and (stage.number < state["stage"] or
                                          (stage.number == state["stage"] and state["stage_done"])):
                    continue  # finished before the restart
                if distributed.any_rank([self.out_of_time()], self.experiment.device)[0]:
                    self.reporter.note(f"time limit of {limit} minutes reached before stage {stage.number}; "
                                       "rerun the same command to continue")
                    completed = False
                    break
                resuming = state is not None and stage.number == state["stage"]
                if not resuming and stage.number > 1:
                    distributed.barrier()  # rank 0 has written the previous stage's best
                    load_weights(self.best_folder(stage.number - 1), self.model)
                finished = self.run_stage(stage, state if resuming else None)
                state = None
                if not finished:
                    completed = False
                    break
        # Before the final resume point, which then keeps this line when a finished run is started again.
        self.metrics.write(kind="summary", completed=completed,
                           best_val_accuracy={row["stage"]: row["best_val_accuracy"] for row in self.summary})
        if completed:
            self.save_last(self.stages[-1], 0, None, None, -1.0, stage_done=True, finished=True)
            if self.ranks.writer:
                run_info.write(self.run_dir, {**self.info, "finished": True})
        if self.ranks.writer:
            self.reporter.final_table(self.summary, time.perf_counter() - started, self.run_dir)

    def best_folder(self, stage_number: int) -> Path:
        return self.checkpoints / f"stage{stage_number}-best"

    def run_stage(self, stage: Stage, state: dict | None) -> bool:
        """Train one stage; False when the time limit stopped it, at a resume point that a rerun continues from.

        Once the stage is done its row joins `summary` before the resume point that marks it done."""
        trainer, experiment = self.cfg.trainer, self.experiment
        optimizer = build_optimizer(self.model, stage.lr, float(trainer.weight_decay), experiment.device,
                                    fused=bool(trainer.get("fused_adamw", True)))
        scheduler = get_scheduler(trainer.scheduler, optimizer, num_warmup_steps=int(stage.warmup_ratio * stage.steps),
                                  num_training_steps=stage.steps)
        best_accuracy, first_step = -1.0, 1
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            best_accuracy, first_step = state["best_accuracy"], state["step"] + 1
        val_samples = experiment.eval_data.sample_set("validation", int(self.cfg.task.eval_seed),
                                                      stage.validation_segments, int(trainer.val_samples))
        step, stage_start = first_step - 1, time.perf_counter()
        self.model.train()
        for step in range(first_step, stage.steps + 1):
            tick = time.perf_counter()
            loss, tokens, grad_norm = self.train_step(stage, step, optimizer, scheduler)
            tokens_per_s = tokens / (time.perf_counter() - tick)
            self.reporter.advance(f"stage {stage.number} ({stage.label} seg) step {step}/{stage.steps} "
                                  f"loss {loss:.4f} lr {scheduler.get_last_lr()[0]:.2e} {tokens_per_s:,.0f} tok/s")
            if step % int(trainer.log_every) == 0 or step == 1:
                self.metrics.write(kind="train", stage=stage.number, step=step, segments=stage.label, loss=loss,
                                   lr=scheduler.get_last_lr()[0], grad_norm=grad_norm,
                                   tokens_per_s=round(tokens_per_s, 1), **self.flops.fields(tokens_per_s),
                                   **loggers.peak_gpu_memory(experiment.device))
            stop_requested, out_of_time = distributed.any_rank([self.stop_signal is not None, self.out_of_time()],
                                                               experiment.device)
            if step % int(trainer.eval_every) == 0 or step == stage.steps:
                val = self.validate(val_samples)
                self.metrics.write(kind="val", stage=stage.number, step=step, segments=stage.validation_segments,
                                   val_accuracy=val)
                self.reporter.note(f"stage {stage.number} step {step}: validation accuracy {val:.2%} "
                                   f"on {len(val_samples)} samples of {stage.validation_segments} segments")
                if val >= best_accuracy:  # a tie keeps the later, longer-trained weights
                    best_accuracy = val
                    if self.ranks.writer:
                        save_checkpoint(self.best_folder(stage.number), self.model, self.meta(stage, step, val))
                done = (stage.advance_at is not None and val >= stage.advance_at) or step == stage.steps
                if done:
                    self.summary.append({"stage": stage.number, "segments": stage.label, "steps": step,
                                         "best_val_accuracy": best_accuracy,
                                         "seconds": round(time.perf_counter() - stage_start, 1)})
                self.save_last(stage, step, optimizer, scheduler, best_accuracy, stage_done=done)
                if done:
                    return True
            if stop_requested or out_of_time:
                # After this step's validation, so that a rerun, which continues with the next step, misses none.
                saved = self.save_last(stage, step, optimizer, scheduler, best_accuracy, stage_done=False)
                if not stop_requested:  # the stage goes on where it stopped when the same command runs again
                    self.reporter.note(f"time limit of {trainer.time_limit_minutes} minutes reached at stage "
                                       f"{stage.number} step {step}; saved {saved} - rerun the same command to "
                                       "continue")
                    return False
                if self.stop_signal is not None:  # this rank's own signal (another rank's may have stopped it)
                    distributed.pass_on(self.stop_signal, self.previous_handlers[self.stop_signal])
                raise Interrupted(f"stopped at stage {stage.number} step {step}; saved {saved} - "
                                  "run the same command again to resume")
        return True

    def validate(self, samples: list) -> float:
        """Accuracy on the stage's validation set; each rank predicts its own slice, the counts are summed."""
        share = samples[self.ranks.rank::self.ranks.world]
        correct = 0
        if share:
            predictions = predict(self.experiment, self.experiment.eval_data, share,
                                  int(self.cfg.trainer.eval_batch_size))
            correct = correct_answers(predictions, share)
        return distributed.total([correct], self.experiment.device)[0] / len(samples)

    def save_last(self, stage: Stage, step: int, optimizer, scheduler, best_accuracy: float, stage_done: bool,
                  finished: bool = False) -> Path:
        """Write the resume checkpoint (rank 0; every rank must call it, as it gathers their RNG states)."""
        rng = distributed.gather(self.rng_state())
        if self.ranks.writer:
            state = {"stage": stage.number, "step": step, "stage_done": stage_done, "finished": finished,
                     "best_accuracy": best_accuracy, "next_sample": self.next_sample, "summary": self.summary,
                     "metrics_lines": self.metrics.lines, **rng[0],
                     "optimizer": optimizer.state_dict() if optimizer else {},
                     "scheduler": scheduler.state_dict() if scheduler else {}}
            if self.ranks.world > 1:
                state["rank_rng"] = rng
            save_resume_point(self.checkpoints, self.next_sample, self.model, self.meta(stage, step, best_accuracy),
                              state, keep=int(self.cfg.trainer.keep_last))
        return resume_folder(self.checkpoints, self.next_sample)

    @staticmethod
    def rng_state() -> dict:
        state: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self) -> dict | None:
        """Load the newest sound resume checkpoint of this run folder, if any: weights, position, RNG, metrics."""
        if self.ranks.writer:
            tidy(self.checkpoints)
        distributed.barrier()
        folder = latest_resume_point(self.checkpoints, self.reporter.note)
        if folder is None:
            self.start_fresh()
            return None
        check_same_run(read_meta(folder)["config"], self.cfg, self.run_dir)
        state = load_trainer_state(folder)
        load_weights(folder, self.model, verified=True)
        self.next_sample, self.summary = state["next_sample"], state["summary"]
        self.metrics.truncate(state["metrics_lines"])
        rng = state
        if self.ranks.world > 1 and len(state.get("rank_rng", [])) == self.ranks.world:
            rng = state["rank_rng"][self.ranks.rank]
        torch.set_rng_state(rng["torch_rng"])
        if "cuda_rng" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda_rng"])
        if not state["finished"]:
            self.reporter.note(f"resuming {self.run_dir} at stage {state['stage']} step {state['step']}")
        return state

    def start_fresh(self) -> None:
        """No resume point: whatever a run killed before its first one left (metrics, stage bests) is dropped."""
        self.metrics.truncate(0)
        if self.ranks.writer:
            for folder in self.checkpoints.glob("stage*-best"):
                shutil.rmtree(folder)

    @contextmanager
    def stop_on_signals(self):
        """Ctrl-C, SIGTERM, or SIGUSR2 (Slurm's warning before a time limit or preemption): finish the current
        step, save, stop. A second signal interrupts at once, except in a data-parallel worker: torchrun follows a
        Ctrl-C with its own SIGTERM, and the workers must still save."""
        def request_stop(signum, frame):
            if self.stop_signal is not None:
                if self.ranks.world == 1:
                    raise KeyboardInterrupt
                return
            self.stop_signal = signum
            self.reporter.note(f"{signal.Signals(signum).name}: stopping after this step (signal again to abort)")

        self.previous_handlers = {sig: signal.signal(sig, request_stop)
                                  for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
        try:
            yield
        finally:
            for sig, handler in self.previous_handlers.items():
                signal.signal(sig, handler)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def train_step(self, stage: Stage, step: int, optimizer, scheduler) -> tuple[float, int, float]:
        """One optimizer step on the global batch; returns its mean loss, the tokens all ranks read and the gradient
        norm before clipping."""
        optimizer.zero_grad(set_to_none=True)
        loss, tokens = self.accumulate_gradients(stage, step)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.cfg.trainer.grad_clip))
        optimizer.step()
        scheduler.step()
        return loss, tokens, grad_norm.item()

    def accumulate_gradients(self, stage: Stage, step: int) -> tuple[float, int]:
        """Forward and backward of this rank's slice of the next global batch (all of it for a lone process).

        Rank r reads samples next_sample + r * local + i, so N ranks together read exactly the samples one process
        would; DDP averages the gradients of equal slices, which equals the gradient of the global batch's mean loss.
        """
        trainer, experiment = self.cfg.trainer, self.experiment
        plan, host_steps = self.host_batch(stage, self.next_sample)
        self.next_sample += int(trainer.batch_size)
        device = experiment.device
        steps = [to_device(tokens, device) for tokens in host_steps]
        labels = to_device(plan.labels(), device)
        with experiment.autocast():
            loss = experiment.head.loss(self.step_model, steps, labels, grad_steps=stage.bptt_segments,
                                        checkpoint_segments=trainer.checkpoint_segments)
        loss.backward()
        if step < stage.steps:  # the device still runs this backward: assemble the next batch meanwhile
            self.prefetched = ((stage.number, self.next_sample), self.host_batch(stage, self.next_sample))
        loss_sum, token_sum = distributed.total([loss.item(), float(plan.counts.sum())], device)
        loss_value = loss_sum / self.ranks.world
        if not math.isfinite(loss_value):
            saved = resume_points(self.checkpoints)
            kept = f"the last good state is {saved[0]} (rerun resumes from it)" if saved else "nothing was saved yet"
            raise RuntimeFailure(f"loss became {loss_value} at stage {stage.number} step {step}; {kept}; "
                                 "lower trainer.lr")
        return loss_value, int(token_sum) * int(self.cfg.segment.length)

    def host_batch(self, stage: Stage, position: int) -> tuple[BatchPlan, list]:
        """This rank's slice of the global batch that starts at training sample `position`: its plan and step
        tokens, on the host. Samples are pure functions of (seed, index), so a slice built ahead (`prefetched`)
        equals one built now."""
        if self.prefetched is not None and self.prefetched[0] == (stage.number, position):
            return self.prefetched[1]
        data = self.experiment.train_data
        assert data is not None, "a Trainer's experiment holds training data"
        local = int(self.cfg.trainer.batch_size) // self.ranks.world
        first = position + self.ranks.rank * local
        samples = [data.training_sample(int(self.cfg.seed), first + i, stage.segments, stage.facts_in_last)
                   for i in range(local)]
        plan = BatchPlan.right_aligned(samples)
        return plan, [step_tokens(data, plan, t) for t in range(plan.n_steps)]

    def meta(self, stage: Stage, step: int, val: float) -> dict:
        return {"config": OmegaConf.to_container(self.cfg, resolve=True), "stage": stage.number, "step": step,
                "val_accuracy": val, "max_segments": stage.segments[1], "labels": list(self.experiment.task.labels)}
