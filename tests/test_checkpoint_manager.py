"""A run's checkpoints/ folder: each stage's best, the newest `keep_last` resume points, the newest sound one back."""

import torch

from rmt_cli.checkpoint_manager import CheckpointManager


def model_of(value: float) -> torch.nn.Linear:
    model = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(model.weight, value)
    return model


def save_points(manager: CheckpointManager, positions) -> None:
    for position in positions:
        manager.save_resume_point(position, model_of(position), {"step": position}, {"next_sample": position})


def test_only_the_newest_resume_points_are_kept(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    save_points(manager, (4, 8, 12, 16))
    manager.save_best(1, model_of(1), {"stage": 1})
    assert sorted(path.name for path in manager.folder.iterdir()) == ["last-000000012", "last-000000016",
                                                                        "stage1-best"]
    assert manager.resume_points() == [manager.folder / "last-000000016", manager.folder / "last-000000012"]


def test_the_newest_resume_point_is_restored_and_a_damaged_one_passed_over(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=3)
    save_points(manager, (4, 8, 12))
    (manager.folder / "last-000000016.tmp").mkdir()  # a save cut short
    weights = manager.folder / "last-000000012" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    warnings = []
    folder = manager.newest_resume_point(warnings.append)
    assert folder == manager.folder / "last-000000008" and not (manager.folder / "last-000000016.tmp").exists()
    assert len(warnings) == 1 and "last-000000012 is damaged" in warnings[0]
    model = model_of(0)
    assert manager.load_resume_point(folder, model) == {"next_sample": 8}
    assert torch.equal(model.weight, model_of(8).weight)


def test_no_resume_point_and_a_fresh_start_drops_the_stage_bests(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    manager.save_best(1, model_of(1), {"stage": 1})
    model = model_of(0)
    manager.load_best(1, model)
    assert torch.equal(model.weight, model_of(1).weight)
    assert manager.newest_resume_point(print) is None
    manager.drop_bests()
    assert list(manager.folder.iterdir()) == []


def test_a_process_other_than_the_writer_writes_nothing(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2, writer=False)
    manager.folder.mkdir()
    save_points(manager, (4,))
    manager.save_best(1, model_of(1), {"stage": 1})
    assert manager.save_resume_point(8, model_of(8), {}, {}) == manager.folder / "last-000000008"
    assert list(manager.folder.iterdir()) == []
