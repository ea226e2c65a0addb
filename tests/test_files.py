"""The atomic write: a reader sees the old content or the new, and a write that
fails part-way leaves the old content and no stray file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from releasectl.files import write_atomic


@pytest.mark.parametrize("durable", [True, False])
def test_a_write_replaces_the_whole_file_and_leaves_nothing_else(
    tmp_path: Path, durable: bool
) -> None:
    path = tmp_path / "deep" / "state.json"
    write_atomic(path, "old", durable=durable)
    write_atomic(path, "new", durable=durable)
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_write_that_fails_part_way_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    write_atomic(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "half written \ud800 and never finished")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]
