"""Files written whole or not at all."""

import stat

import pytest

from rmt_cli.atomic import atomic_file


def test_a_finished_write_replaces_the_file_readable_by_all(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text("old")
    with atomic_file(path) as file:
        file.write("new")
        assert path.read_text() == "old"  # nothing changes until the block ends
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_a_write_cut_short_leaves_the_old_file_and_no_leftover(tmp_path):
    path = tmp_path / "novel.txt"
    path.write_text("whole")
    with pytest.raises(KeyboardInterrupt), atomic_file(path, encoding="utf-8") as file:
        file.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "whole" and [p.name for p in tmp_path.iterdir()] == ["novel.txt"]
