"""A curriculum stage's own segment length (`segment_length`): shorter segments hold less noise around a story, so a
first stage can learn the task on short inputs before the others read full segments."""

from __future__ import annotations

from rmt_cli.engine import content_length


def compose_train(*overrides):
    from hydra import compose, initialize_config_dir

    from rmt_cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=["experiment=smoke", "trainer.device=cpu", *overrides])


def test_a_stage_reads_segments_of_its_own_length_or_segment_length():
    from rmt_cli.curriculum import curriculum_stages

    cfg = compose_train("curriculum.stages=[{segments:1,steps:2,segment_length:56},{segments:2,steps:2}]")
    assert [stage.segment_length for stage in curriculum_stages(cfg)] == [56, 64]


def test_training_and_validation_use_the_stages_segment_length(tmp_path, monkeypatch, capsys):
    from test_resume import train_in_process

    from rmt_cli.train import Trainer

    cfg = compose_train("curriculum.stages=[{segments:1,steps:2,segment_length:56},{segments:2,steps:2}]")
    widths: dict[int, set] = {1: set(), 2: set()}  # per stage: content tokens of its training segments
    validated: dict[int, set] = {1: set(), 2: set()}  # and of its validation samples
    host_batch, validate = Trainer.host_batch, Trainer.validate

    def recorded_batch(self, stage, position, step):
        plan, steps = host_batch(self, stage, position, step)
        widths[stage.number] |= {tokens.shape[1] for tokens in steps}
        return plan, steps

    def recorded_validate(self, samples, data):
        validated[self.state.stage] |= {data.segment(sample, 0).shape[0] for sample in samples}
        return validate(self, samples, data)

    monkeypatch.setattr(Trainer, "host_batch", recorded_batch)
    monkeypatch.setattr(Trainer, "validate", recorded_validate)
    metrics = train_in_process(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert "on 8 samples of 1 segments of 56 positions" in out and "on 8 samples of 2 segments\n" in out
    short, full = content_length(56, 10), content_length(64, 10)
    assert widths == {1: {short}, 2: {full}} and validated == {1: {short}, 2: {full}}
    assert [line["stage"] for line in metrics if line["kind"] == "val"] == [1, 2]
    assert metrics[-1]["kind"] == "summary" and metrics[-1]["completed"] is True


def test_a_run_is_evaluated_at_any_segment_length_it_trained_on_and_no_other(tmp_path):
    from helpers.cli import rmt
    from test_resume import train_in_process

    cfg = compose_train("curriculum.stages=[{segments:1,steps:2,segment_length:56},{segments:2,steps:2}]")
    train_in_process(cfg, tmp_path / "run")
    short = rmt("extrapolate", "--checkpoint", tmp_path / "run", "--segments", "1,2", "--samples", "4",
                "segment.length=56", f"hydra.run.dir={tmp_path / 'short'}")
    assert short.returncode == 0, short.stderr
    assert f"1 segments ({content_length(56, 10)} tokens)" in short.stdout  # the first stage's segments
    untrained = rmt("eval", "--checkpoint", tmp_path / "run", "segment.length=48")
    assert untrained.returncode == 2 and "Traceback" not in untrained.stderr
    assert ("the checkpoint was trained on segments of 56 or 64 positions, not segment.length=48; use one of those "
            "lengths") in untrained.stderr
