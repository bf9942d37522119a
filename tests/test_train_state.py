"""TrainState: a round trip through a resume point's trainer.pt, in the format resume points have always had."""

import torch

from rmt_cli.train_state import TrainState, current_rng, set_rng

# The keys of trainer.pt besides the optimizer's and scheduler's, as runs before TrainState wrote them.
SAVED_KEYS = {"stage", "step", "stage_done", "finished", "best_accuracy", "next_sample", "summary", "metrics_lines",
              "torch_rng"}


def rng_of_seed(seed: int) -> dict:
    return {"torch_rng": torch.Generator().manual_seed(seed).get_state()}


def mid_stage(ranks: int = 1) -> TrainState:
    return TrainState(stage=2, step=7, best_accuracy=0.25, next_sample=112, metrics_lines=19,
                      summary=[{"stage": 1, "segments": "1", "steps": 4, "best_val_accuracy": 0.5, "seconds": 1.5}],
                      rank_rng=[rng_of_seed(rank) for rank in range(ranks)])


def through_a_file(state: dict, tmp_path) -> dict:
    torch.save({**state, "optimizer": {}, "scheduler": {}}, tmp_path / "trainer.pt")
    return torch.load(tmp_path / "trainer.pt", weights_only=True)  # as checkpoint.load_trainer_state reads it


def same_states(a: TrainState, b: TrainState) -> bool:
    plain = [field for field in a.__dataclass_fields__ if field != "rank_rng"]
    return (all(getattr(a, field) == getattr(b, field) for field in plain) and len(a.rank_rng) == len(b.rank_rng)
            and all(torch.equal(x["torch_rng"], y["torch_rng"]) for x, y in zip(a.rank_rng, b.rank_rng, strict=True)))


def test_a_state_comes_back_from_its_state_dict(tmp_path):
    for ranks in (1, 2):
        state, loaded = mid_stage(ranks), TrainState()
        loaded.load_state_dict(through_a_file(state.state_dict(), tmp_path))
        assert same_states(loaded, state)
    assert not same_states(mid_stage(1), mid_stage(2))


def test_the_state_dict_keeps_the_resume_point_format():
    alone = mid_stage().state_dict()
    assert set(alone) == SAVED_KEYS
    assert (alone["stage"], alone["step"], alone["next_sample"], alone["best_accuracy"]) == (2, 7, 112, 0.25)
    two = mid_stage(ranks=2).state_dict()
    assert set(two) == SAVED_KEYS | {"rank_rng"}  # rank 0's at the top, as a lone process reads it
    assert torch.equal(two["torch_rng"], two["rank_rng"][0]["torch_rng"])


def test_a_resume_point_of_a_lone_process_loads_into_any_number_of_ranks():
    old = {"stage": 1, "step": 3, "stage_done": False, "finished": False, "best_accuracy": -1.0, "next_sample": 12,
           "summary": [], "metrics_lines": 4, **rng_of_seed(5), "optimizer": {}, "scheduler": {}}
    state = TrainState()
    state.load_state_dict(old)
    assert (state.stage, state.step, state.next_sample, state.metrics_lines) == (1, 3, 12, 4)
    for rank, world in ((0, 1), (1, 2)):
        assert torch.equal(state.rng_of(rank, world)["torch_rng"], old["torch_rng"])
    saved_by_two = mid_stage(ranks=2)
    assert torch.equal(saved_by_two.rng_of(1, 2)["torch_rng"], rng_of_seed(1)["torch_rng"])
    assert torch.equal(saved_by_two.rng_of(1, 3)["torch_rng"], rng_of_seed(0)["torch_rng"])  # another world: rank 0's


def test_which_stages_run_after_a_stop_inside_a_stage_and_after_a_finished_curriculum():
    fresh = TrainState()
    assert fresh.pending(1) and not fresh.inside(1)
    stopped = mid_stage()
    assert [stopped.pending(n) for n in (1, 2, 3)] == [False, True, True] and stopped.inside(2)
    stopped.end_stage({"stage": 2})
    assert [stopped.pending(n) for n in (2, 3)] == [False, True] and not stopped.inside(2)
    stopped.finish(3)
    assert (stopped.stage, stopped.step, stopped.stage_done, stopped.finished) == (3, 0, True, True)
    assert not stopped.pending(3) and stopped.pending(4)  # a stage added to the curriculum
    stopped.begin_stage(4)
    assert not stopped.finished and stopped.best_accuracy == -1.0


def test_the_random_number_generator_continues_where_it_was_saved():
    saved = current_rng()
    expected = torch.rand(3)
    set_rng(saved)
    assert torch.equal(torch.rand(3), expected)


def test_the_spike_guard_travels_with_the_state_only_once_it_has_seen_a_step(tmp_path):
    state = mid_stage()
    state.recent_grad_norms, state.skipped_steps = [0.5, 0.25, 0.75], 1
    saved = state.state_dict()
    assert set(saved) == SAVED_KEYS | {"spike_guard"}
    loaded = TrainState()
    loaded.load_state_dict(through_a_file(saved, tmp_path))
    assert (loaded.recent_grad_norms, loaded.skipped_steps) == ([0.5, 0.25, 0.75], 1) and same_states(loaded, state)
    loaded.begin_stage(3)
    assert (loaded.recent_grad_norms, loaded.skipped_steps) == ([], 0)  # each stage has its own median
