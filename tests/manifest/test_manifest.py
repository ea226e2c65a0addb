"""The manifest model and its comment-keeping edits."""

from __future__ import annotations

import pytest

from releasectl.errors import BadInput
from releasectl.manifest import edits
from releasectl.manifest import schema as mf

TEXT = """\
# Owned by the fraud team.
apiVersion: releasectl/v1
model: iris   # the folder's name
version: "1.0.0"
serial: 4
bundle:
  bento: iris
  # digest is filled in by releasectl release
  digest:
deploy:
  port: 3100
"""


def test_edit_changes_only_what_it_must() -> None:
    new = edits.edit(TEXT, "x", {"version": "1.1.0", "serial": 5}, model="iris")
    old_lines, new_lines = TEXT.splitlines(), new.splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert changed == [('version: "1.0.0"', 'version: "1.1.0"'), ("serial: 4", "serial: 5")]


def test_edit_adds_and_removes_a_record() -> None:
    record = {
        "from": "1.1.0",
        "to": "1.0.0",
        "reason": "r",
        "at": "2026-01-01T00:00:00+00:00",
        "by": "me@example.test",
    }
    added = edits.edit(TEXT, "x", {"rollback": record}, model="iris")
    assert mf.load(added, "x").rollback is not None
    removed = edits.edit(added, "x", {"rollback": None})
    assert removed == TEXT


def test_edit_refuses_a_result_that_does_not_validate() -> None:
    with pytest.raises(BadInput, match="serial"):
        edits.edit(TEXT, "x", {"serial": -1})


def test_rollback_must_match_the_version() -> None:
    record = {
        "from": "1.1.0",
        "to": "0.9.0",
        "reason": "r",
        "at": "2026-01-01T00:00:00Z",
        "by": "m",
    }
    with pytest.raises(BadInput, match=r"rollback\.to"):
        edits.edit(TEXT, "x", {"rollback": record})


def test_yaml_tags_cannot_construct_objects() -> None:
    evil = TEXT.replace("bento: iris", "bento: !!python/object/apply:os.system ['true']")
    with pytest.raises(BadInput):
        mf.load(evil, "x")


def test_a_float_looking_version_is_refused_not_coerced() -> None:
    with pytest.raises(BadInput, match="version"):
        mf.load(TEXT.replace('"1.0.0"', "1.10"), "x")


def test_oversized_file_is_refused() -> None:
    with pytest.raises(BadInput, match="larger than"):
        mf.load(TEXT + "#" * (mf.MAX_BYTES + 1), "x")
