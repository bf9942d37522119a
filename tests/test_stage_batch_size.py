"""A curriculum stage's own batch size (`batch_size`): samples per optimizer step in that stage, the trainer's in the
others; the samples read stay one sequence (each step begins where the step before ended)."""

from __future__ import annotations

from test_stage_segment_length import compose_train

TWO_STAGES = "curriculum.stages=[{segments:1,steps:2},{segments:2,steps:2,batch_size:6}]"


def test_a_stage_takes_its_own_batch_size_or_the_trainers():
    from rmt_cli.curriculum import curriculum_stages

    cfg = compose_train("trainer.batch_size=4", TWO_STAGES)
    assert [stage.batch_size for stage in curriculum_stages(cfg)] == [4, 6]


def test_training_reads_the_stages_batch_of_samples_one_after_another(tmp_path, monkeypatch):
    from test_resume import train_in_process

    from rmt_cli.train import Trainer

    cfg = compose_train("trainer.batch_size=4", TWO_STAGES)
    batches: list[tuple[int, int, int]] = []  # (stage, first sample, rows) of every training batch
    host_batch = Trainer.host_batch

    def recorded_batch(self, stage, position, step):
        plan, steps = host_batch(self, stage, position, step)
        batches.append((stage.number, position, len(plan.samples)))
        return plan, steps

    monkeypatch.setattr(Trainer, "host_batch", recorded_batch)
    metrics = train_in_process(cfg, tmp_path / "run")
    assert sorted(set(batches)) == [(1, 0, 4), (1, 4, 4), (2, 8, 6), (2, 14, 6)]
    assert metrics[-1]["kind"] == "summary" and metrics[-1]["completed"] is True
