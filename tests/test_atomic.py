"""Replacing a directory whole: the old one stays after any failure, nothing is left beside it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from eef.atomic import STALE_STAGING_S, atomic_dir
from eef.errors import EefError


def contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in path.iterdir()}


def test_the_new_directory_replaces_the_old_whole(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.md").write_text("old")
    with atomic_dir(target) as staging:
        assert staging.parent == tmp_path and staging != target and contents(staging) == {}
        (staging / "new.md").write_text("new")
        assert contents(target) == {"old.md": "old"}  # readers see the old one until the swap
    assert contents(target) == {"new.md": "new"} and [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_failure_while_writing_or_swapping_leaves_the_old_directory(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.md").write_text("old")
    with pytest.raises(ValueError), atomic_dir(target) as staging:
        (staging / "half.md").write_text("half")
        raise ValueError("a malformed artifact")
    assert contents(target) == {"old.md": "old"} and [p.name for p in tmp_path.iterdir()] == ["report"]

    renames = []
    real_rename = Path.rename

    def second_rename_fails(self: Path, to: Path) -> Path:
        renames.append(self)
        if len(renames) == 2:  # the staging directory into place, after the old one moved aside
            raise OSError(28, "No space left on device")
        return real_rename(self, to)

    monkeypatch.setattr(Path, "rename", second_rename_fails)
    with pytest.raises(OSError), atomic_dir(target) as staging:
        (staging / "new.md").write_text("new")
    monkeypatch.undo()
    assert contents(target) == {"old.md": "old"} and [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_link_has_its_target_replaced_and_a_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "report").symlink_to(real)
    with atomic_dir(tmp_path / "report") as staging:
        (staging / "new.md").write_text("new")
    assert (tmp_path / "report").is_symlink() and contents(real) == {"new.md": "new"}
    (tmp_path / "file").write_text("mine")
    with pytest.raises(EefError, match="exists and is not a directory"), atomic_dir(tmp_path / "file"):
        pass
    assert (tmp_path / "file").read_text() == "mine"


def test_staging_left_by_a_killed_process_is_removed_once_stale(tmp_path: Path) -> None:
    old, recent = tmp_path / ".report.abc.tmp", tmp_path / ".report.def.tmp"
    old.mkdir()
    recent.mkdir()  # perhaps another process's, still writing
    long_ago = time.time() - STALE_STAGING_S - 60
    os.utime(old, (long_ago, long_ago))
    with atomic_dir(tmp_path / "report"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".report.def.tmp", "report"]


def test_a_directory_another_writer_lands_meanwhile_is_moved_aside_and_the_last_writer_wins(
    tmp_path: Path, monkeypatch
) -> None:
    """`eef report` beside a run: both replace the report; the other's rename lands between this
    one moving the old directory aside and renaming its own into place."""
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.md").write_text("old")
    real_rename = Path.rename
    landed = []

    def the_other_writer_lands_first(self: Path, to: Path) -> Path:
        if Path(to) == target and not landed:
            landed.append(True)
            target.mkdir()
            (target / "other.md").write_text("other")
        return real_rename(self, to)

    monkeypatch.setattr(Path, "rename", the_other_writer_lands_first)
    with atomic_dir(target) as staging:
        (staging / "new.md").write_text("new")
    monkeypatch.undo()
    assert landed and contents(target) == {"new.md": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
