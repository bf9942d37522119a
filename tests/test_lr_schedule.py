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


def test_steps_that_fit_cut_the_stage_to_the_time_left_and_never_lengthen_it():
    assert steps_that_fit(50, 300, 2.0, 200.0, reserve=10.0) == 145  # 190 s hold 95 more steps
    assert steps_that_fit(50, 300, 2.0, 10_000.0, reserve=10.0) == 300  # time for every planned step
    assert steps_that_fit(50, 300, 2.0, 5.0, reserve=10.0) == 50  # no time for another: the stage ends now
    assert steps_that_fit(50, 300, 2.0, -30.0, reserve=10.0) == 50  # past the limit
