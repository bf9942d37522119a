"""A stage's `lengths_per`: a range's segment count drawn per sample (the default) or once per batch for all its rows
(samples.batch_segments), the same count on every process and after a resume."""

from __future__ import annotations

from test_stage_segment_length import compose_train

PER_BATCH = "curriculum.stages=[{segments:[1,4],steps:6,lengths_per:batch}]"


def test_a_batch_count_is_a_pure_function_of_seed_and_position_that_covers_the_range():
    from rmt_cli.samples import batch_segments

    draws = [batch_segments(0, position, (16, 64)) for position in range(0, 32 * 400, 32)]
    assert all(lo == hi for lo, hi in draws)
    counts = {lo for lo, _ in draws}
    assert counts == set(range(16, 65))  # every count of the range, none outside it
    assert draws == [batch_segments(0, position, (16, 64)) for position in range(0, 32 * 400, 32)]
    assert draws != [batch_segments(1, position, (16, 64)) for position in range(0, 32 * 400, 32)]
    assert batch_segments(3, 96, (5, 5)) == (5, 5)


def recorded_batches(monkeypatch) -> list[tuple[int, tuple[int, ...]]]:
    """(first sample, each row's segment count in the trainer's row order) of every training batch the trainer
    assembles from now on."""
    from rmt_cli.train import Trainer

    batches: list[tuple[int, tuple[int, ...]]] = []
    host_batch = Trainer.host_batch

    def recorded(self, stage, position, step):
        plan, steps = host_batch(self, stage, position, step)
        counts = [0] * len(plan.samples)
        for sample, row in zip(plan.samples, plan.order, strict=True):  # the plan sorts its rows by length
            counts[row] = sample.n_segments
        batches.append((position, tuple(counts)))
        return plan, steps

    monkeypatch.setattr(Trainer, "host_batch", recorded)
    return batches


def test_per_batch_every_row_of_a_step_has_the_steps_count_and_the_counts_vary_between_steps(tmp_path, monkeypatch):
    from test_resume import train_in_process

    batches = recorded_batches(monkeypatch)
    metrics = train_in_process(compose_train("trainer.batch_size=4", PER_BATCH), tmp_path / "run")
    assert metrics[-1]["kind"] == "summary" and metrics[-1]["completed"] is True
    counts = [set(rows) for _, rows in batches]
    assert all(len(rows) == 1 and rows <= {1, 2, 3, 4} for rows in counts), batches
    assert len(set.union(*counts)) > 1, batches  # six steps drawing from 1-4 (seed 0: 3, 4, 2, 2, 4, 4)


def test_per_sample_the_rows_of_a_batch_have_their_own_counts(tmp_path, monkeypatch):
    from test_resume import train_in_process

    batches = recorded_batches(monkeypatch)
    train_in_process(compose_train("trainer.batch_size=4", PER_BATCH.replace("batch}", "sample}")), tmp_path / "run")
    assert any(len(set(rows)) > 1 for _, rows in batches), batches


def identity(sample) -> tuple:
    return sample.label, tuple(sample.noise_starts.tolist()), tuple(sample.question.tolist())


def test_each_process_slice_of_a_per_batch_batch_is_the_lone_process_batch_split(tmp_path):
    """Rank r of N reads its slice of the global batch; the count is the global batch's, so the N slices together
    are the batch one process reads (same samples, same count)."""
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.distributed import Ranks
    from rmt_cli.experiment import build_experiment
    from rmt_cli.train import Trainer

    cfg = compose_train("trainer.batch_size=4", PER_BATCH)
    stages = curriculum_stages(cfg)
    trainer = Trainer(cfg, build_experiment(cfg, "cpu", with_training_data=True), stages, tmp_path)
    for position in (0, 4, 8, 12):
        alone, _ = trainer.host_batch(stages[0], position, 1)
        slices = []
        for rank in (0, 1):
            trainer.ranks = Ranks(rank=rank, world=2)
            plan, _ = trainer.host_batch(stages[0], position, 1)
            slices += plan.samples
        trainer.ranks = Ranks()
        assert len({s.n_segments for s in slices}) == 1
        assert sorted(map(identity, slices)) == sorted(map(identity, alone.samples))


def test_a_chained_stage_draws_per_batch_counts_for_its_unchained_rows(tmp_path, monkeypatch):
    from test_resume import train_in_process

    batches = recorded_batches(monkeypatch)
    cfg = compose_train("trainer.batch_size=4", "curriculum.stages=[{segments:[1,4],steps:4,lengths_per:batch,"
                        "chain_share:0.5,chain_steps:2}]")
    metrics = train_in_process(cfg, tmp_path / "run")
    assert metrics[-1]["kind"] == "summary" and metrics[-1]["completed"] is True
    # chain_share 0.5 of 4 rows: rows 0-1 read chains, rows 2-3 are drawn as in any per-batch stage
    assert all(len(set(rows[2:])) == 1 for _, rows in batches), batches


def test_a_per_batch_stage_stopped_mid_stage_resumes_to_the_same_batches_and_metrics(tmp_path, monkeypatch):
    from test_resume import stop_after_step, train_in_process

    from rmt_cli.stopping import Deadline

    cfg = compose_train("trainer.batch_size=4", PER_BATCH)
    batches = recorded_batches(monkeypatch)
    whole = train_in_process(cfg, tmp_path / "whole")
    uninterrupted, batches[:] = list(batches), []
    stop_after_step(monkeypatch, 2)  # a validation step (experiment=smoke validates every 2)
    train_in_process(cfg, tmp_path / "run")
    monkeypatch.setattr(Deadline, "passed", lambda self: False)
    assert train_in_process(cfg, tmp_path / "run") == whole
    # the batch after the stop is built twice (ahead of the stop, and again after the resume), the same both times
    assert sorted(set(batches)) == sorted(set(uninterrupted)) and len(set(uninterrupted)) == 6
