import pytest
import torch

from rmt_cli.lr_schedule import stage_schedule, steps_that_fit


def optimizer():
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)


def lrs_after_each_step(scheduler, optimizer, steps):
    seen = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        seen.append(scheduler.get_last_lr()[0])
    return seen


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_a_schedule_built_after_some_steps_stands_where_one_stepped_that_far_does(name):
    stepped_optimizer = optimizer()
    stepped = stage_schedule(name, stepped_optimizer, 2, 10)
    expected = lrs_after_each_step(stepped, stepped_optimizer, 10)
    late_optimizer = optimizer()
    lrs_after_each_step(stage_schedule(name, late_optimizer, 2, 30), late_optimizer, 4)  # another schedule's steps
    rebuilt = stage_schedule(name, late_optimizer, 2, 10, taken=4)
    assert rebuilt.get_last_lr()[0] == pytest.approx(expected[3])
    assert lrs_after_each_step(rebuilt, late_optimizer, 6) == pytest.approx(expected[4:])
    assert expected[-1] == pytest.approx(0.0, abs=1e-12)  # decayed to the end of the schedule


def test_steps_that_fit_are_those_the_time_left_holds_and_never_more_than_planned():
    assert steps_that_fit(50, 300, 2.0, 200.0, reserve=10.0) == 145  # 190 s hold 95 more steps
    assert steps_that_fit(50, 300, 2.0, 10_000.0, reserve=10.0) == 300  # time for every planned step
    assert steps_that_fit(50, 300, 2.0, 5.0, reserve=10.0) == 50  # no time for another: the stage ends now
    assert steps_that_fit(50, 300, 2.0, -30.0, reserve=10.0) == 50  # past the limit


def test_the_pace_leaves_out_the_stage_start_once_a_step_follows_its_first_measurement(monkeypatch):
    import rmt_cli.train as train
    from rmt_cli.train import StageRun

    clock = iter([160.0, 160.0,  # first measurement at step 10: 20 s of start-up and 10 steps of 4 s
                  200.0,  # step 20, 10 steps later: 4 s a step
                  200.0])
    monkeypatch.setattr(train.time, "perf_counter", lambda: next(clock))
    run = StageRun(stage=None, optimizer=None, scheduler=None, val_data=None, val_samples=[], started=100.0)
    assert run.measure_pace(10) == pytest.approx(6.0)
    assert run.paced_from == (160.0, 10)
    assert run.measure_pace(20) == pytest.approx(4.0)
    assert run.paced_from == (160.0, 10)  # later measurements start from the first
    assert run.seconds_per_step(10) == pytest.approx(10.0)  # no step after it yet: since the stage started
