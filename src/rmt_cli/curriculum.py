"""The curriculum of `rmt train` as Stages: segment counts growing stage by stage, each with its own steps and, where
the stage sets them, its own learning rate, warm-up, BPTT window, activation checkpointing, weight average, validation
length, size and interval, early exit, training mix (fact placement, share of confusing noise, share of stories
whose question several facts name, share of noise from generated text), share of batch rows whose memory carries
on from step to step or starts from one that has read only noise, segment length, batch size, and whether a range's
counts are drawn per sample or per batch; the trainer's (or the curriculum's, or segment.length) values otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from rmt_cli.samples import TrainingMix, batch_segments


@dataclass(frozen=True)
class Stage:
    number: int
    segments: tuple[int, int]  # segment counts drawn uniformly from [lo, hi], per sample or per batch (lengths_per)
    steps: int
    lr: float
    warmup_ratio: float
    val_samples: int  # size of the stage's fixed validation set
    eval_every: int  # validate every N steps (and at the stage's end)
    bptt_segments: int | None = None  # truncated BPTT window of this stage (None: all segments)
    checkpoint_segments: bool = False  # recompute each segment's activations in backward (memory flat in length)
    ema_decay: float | None = None  # validate and keep an average of the weights (weight_average.py); None: off
    revert_drop: float | None = None  # a validation this far below the stage's best restores that best; None: never
    val_segments: int | None = None  # validation samples' length (None: the stage's longest training length)
    advance_at: float | None = None  # leave the stage once validation reaches this (None: run all its steps)
    mix: TrainingMix = TrainingMix()  # how training samples are drawn beyond their length (fact placement, shares)
    carry_memory: float = 0.0  # share of batch rows whose memory carries on from step to step (train.carried_rows)
    noise_primed: float = 0.0  # share of batch rows that start from a memory that has read only noise (primed.py)
    primed_segments: tuple[int, int] = (4, 4)  # noise segments each primed memory reads a step, lo growing to hi
    chain_share: float = 0.0  # share of batch rows that read one long input over several steps (chains.py)
    chain_steps: tuple[int, int] = (16, 16)  # the most steps of one such input, growing from lo to hi over the stage
    segment_length: int = 512  # positions per segment (segment.length unless the stage sets its own)
    batch_size: int = 16  # samples per optimizer step, all processes together (trainer.batch_size unless the stage's)
    # "batch": every row of a step has the same count (samples.batch_segments). A right-aligned batch runs as many
    # segment steps as its longest row, each costing the host about as much whatever its rows, so drawn per sample
    # a [16, 64] batch of 32 runs about 63 steps for an average of 40 segments a row; drawn per batch, 40.
    lengths_per: str = "sample"

    def segment_counts(self, seed: int, position: int) -> tuple[int, int]:
        """The range the segment counts of the training batch starting at sample `position` are drawn from: the
        stage's, or with lengths_per=batch one count for all its rows (the same on every rank and after a resume)."""
        return batch_segments(seed, position, self.segments) if self.lengths_per == "batch" else self.segments

    @property
    def validation_segments(self) -> int:
        return self.segments[1] if self.val_segments is None else self.val_segments

    @property
    def label(self) -> str:
        lo, hi = self.segments
        return str(hi) if lo == hi else f"{lo}-{hi}"


def curriculum_stages(cfg) -> list[Stage]:
    """The curriculum as Stages; its values were typed and checked when the config was composed (schema,
    config_check.py)."""
    trainer, stages = cfg.trainer, []
    for number, stage in enumerate(cfg.curriculum.stages, start=1):
        stages.append(Stage(number, count_range(stage.segments), stage.steps, setting(stage, "lr", trainer.lr),
                            setting(stage, "warmup_ratio", trainer.warmup_ratio),
                            bptt_segments=setting(stage, "bptt_segments", trainer.bptt_segments),
                            checkpoint_segments=setting(stage, "checkpoint_segments",
                                                        trainer.checkpoint_segments),
                            ema_decay=setting(stage, "ema_decay", trainer.ema_decay),
                            revert_drop=setting(stage, "revert_drop", trainer.revert_drop),
                            val_segments=stage.val_segments,
                            val_samples=setting(stage, "val_samples", trainer.val_samples),
                            eval_every=setting(stage, "eval_every", trainer.eval_every),
                            advance_at=setting(stage, "advance_at", cfg.curriculum.advance_at),
                            mix=TrainingMix(facts_in_last=stage.facts_in_last,
                                            confuser_share=stage.confuser_share,
                                            confuser_answers=stage.confuser_answers,
                                            multi_fact_share=stage.multi_fact_share,
                                            generated_share=setting(stage, "generated_share",
                                                                    cfg.curriculum.generated_share),
                                            facts_before_question=stage.facts_before_question),
                            carry_memory=stage.carry_memory, noise_primed=stage.noise_primed,
                            primed_segments=count_range(stage.primed_segments), chain_share=stage.chain_share,
                            chain_steps=count_range(stage.chain_steps),
                            segment_length=setting(stage, "segment_length", cfg.segment.length),
                            batch_size=setting(stage, "batch_size", trainer.batch_size),
                            lengths_per=stage.lengths_per))
    return stages


def curriculum_cautions(stages: list[Stage]) -> list[str]:
    """Lines to show before training, one per stage whose settings work against each other (none for most runs)."""
    primed = [f"stage {stage.number}: advance_at {stage.advance_at:g} with noise_primed {stage.noise_primed:g}: its "
              "validation reads no primed memory and can pass advance_at before the primed rows are learnt (a CPU "
              "check left such a stage at steps 25-75 of 150 and kept no more than a plain stage: "
              "results/cpu_checks/retention, section 7); leave advance_at out of that stage to train them"
              for stage in stages if stage.noise_primed and stage.advance_at is not None]
    alone = [f"stage {stage.number}: facts_before_question with inputs of one segment: the question's segment is "
             "the only one, so its facts stay in it; give the stage 2 or more segments"
             for stage in stages if stage.mix.facts_before_question and stage.segments[1] == 1]
    return primed + alone


def count_range(value) -> tuple[int, int]:
    """A count, or a range [lo, hi], as (lo, hi)."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def setting(stage, key: str, default):
    """A stage's own value of `key`; null (or a stage that leaves it out) takes `default`, the trainer's or the
    curriculum's (an explicit 0 counts, unlike an `or` fallback)."""
    value = stage.get(key)
    return default if value is None else value
