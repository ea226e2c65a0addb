"""The core protocols' decisions as tables, in-process and without git: the
landing journal's schema (a crash's plan, read back from a file anyone with
`.git` write can edit), the succession policy, the tag grammar's spellings and
what blocks a tag's name (docs/ARCHITECTURE.md, "Landing a change", "The
registry", "The tag grammar"), and what a revert says it did. The scenario
tests drive the same functions through real git; these name each decision once,
so a change to one fails here first and says which."""

from __future__ import annotations

import pytest

from releasectl.errors import BadInput
from releasectl.names import (
    ModelName,
    ModelVersion,
    parse_tag,
    ref_in_the_way,
    registry_ref,
    version_arg,
)
from releasectl.registry.journal import BadJournal, Journal, parse
from releasectl.registry.landing import Landed
from releasectl.registry.revert import RevertPlan, RevertResult
from releasectl.registry.succession import Succession

A, B = "a" * 40, "b" * 40


def _journal(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "branch": "main",
        "base": A,
        "commit": B,
        "tags": {"release/iris/v1.0.0": B},
        "sync_paths": ["model-releases/iris"],
        "remote": "origin",
        "remote_branch": "main",
    }
    doc.update(changes)
    return doc


def test_a_journal_as_written_reads_back_whole() -> None:
    assert parse(_journal()) == Journal(
        "main", A, B, {"release/iris/v1.0.0": B}, ("model-releases/iris",), "origin", "main"
    )
    tags_only = parse(_journal(commit=None, remote=None, remote_branch=None))
    assert tags_only.commit is None and tags_only.remote is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"remote": "--upload-pack=touch /tmp/x"}, "remote"),  # an option, never a name
        ({"remote_branch": None}, "remote"),  # a remote without its branch
        ({"branch": "-b"}, "branch"),
        ({"branch": "a/../b"}, "branch"),
        ({"base": "HEAD"}, "base"),  # a revision, not an object id
        ({"commit": "B" * 40}, "commit"),
        ({"tags": {"release/iris/v1.0.0/x": B}}, "tags"),  # below a registry name
        ({"tags": {"stable/iris/1.0.0": B}}, "tags"),  # not the grammar's spelling
        ({"tags": {"release/iris/v1.0.0": "main"}}, "tags"),
        ({"tags": []}, "tags"),
        ({"sync_paths": ["/etc"]}, "sync_paths"),
        ({"sync_paths": ["model-releases/../.git"]}, "sync_paths"),
        ({"sync_paths": ["-x"]}, "sync_paths"),
        ({"sync_paths": ["a\x1b[2Jb"]}, "sync_paths"),
        ({"extra": 1}, "fields"),
    ],
)
def test_a_journal_that_is_not_exactly_one_is_refused_by_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(BadJournal) as refused:
        parse(_journal(**changes))
    assert field in str(refused.value)


@pytest.mark.parametrize("raw", [None, [], "journal", 7, {}])
def test_a_journal_that_is_not_an_object_is_refused(raw: object) -> None:
    with pytest.raises(BadJournal):
        parse(raw)


@pytest.mark.parametrize(
    ("before", "after", "rises", "follows", "unchanged"),
    [
        (("1.0.0", 1), ("1.1.0", 2), True, True, False),  # a release
        (("1.1.0", 2), ("1.0.0", 3), False, True, False),  # a revert: version back, serial on
        (("1.0.0", 1), ("1.0.0", 1), False, False, True),  # not a release at all
        (("1.0.0", 1), ("1.1.0", 3), True, False, False),  # a serial skipped
        (("1.0.0", 2), ("1.1.0", 2), True, False, False),  # a serial replayed
        (("1.0.0", 1), ("1.0.0-rc.1", 2), False, True, False),  # a pre-release is lower
        (("1.0.0-rc.1", 1), ("1.0.0", 2), True, True, False),
        (("1.9.0", 1), ("1.10.0", 2), True, True, False),  # numbers, not text
    ],
)
def test_succession(
    before: tuple[str, int],
    after: tuple[str, int],
    rises: bool,
    follows: bool,
    unchanged: bool,
) -> None:
    step = Succession(*before, *after)
    assert (step.version_rises, step.serial_follows, step.unchanged) == (rises, follows, unchanged)


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("refs/tags/release/iris/v1.0.0", ("release", "iris", "1.0.0")),
        ("refs/tags/stable/fraud-2/v0.1.0-rc.1", ("stable", "fraud-2", "0.1.0-rc.1")),
        ("refs/tags/rejected/iris/v1.0.0", ("rejected", "iris", "1.0.0")),
        ("refs/tags/release/iris/1.0.0", None),  # no 'v'
        ("refs/tags/release/iris/v01.0.0", None),  # not SemVer
        ("refs/tags/release/iris/v1.0.0+build", None),  # build metadata
        ("refs/tags/release/Iris/v1.0.0", None),  # not a DNS label
        ("refs/tags/release/iris/v1.0.0/x", None),  # below a name
        ("refs/tags/release/iris", None),
        ("refs/heads/release/iris/v1.0.0", None),  # not a tag
        ("release/iris/v1.0.0", None),  # not a full ref name
        ("refs/tags/promoted/iris/v1.0.0", None),  # not a registry kind
    ],
)
def test_registry_refs_are_the_grammar_exactly(ref: str, parsed: tuple[str, ...] | None) -> None:
    found = registry_ref(ref)
    assert (tuple(found) if found else None) == parsed
    if parsed is not None:  # the short spelling parses the same
        assert parse_tag(ref.removeprefix("refs/tags/")) == found


@pytest.mark.parametrize(
    ("refs", "blocking"),
    [
        ([], None),
        (["refs/tags/rejected/iris/v1.0.0"], "refs/tags/rejected/iris/v1.0.0"),  # taken
        (["refs/tags/rejected/iris/v1.0.0/x"], "refs/tags/rejected/iris/v1.0.0/x"),  # below
        (["refs/tags/rejected/iris"], "refs/tags/rejected/iris"),  # above: a file, not a folder
        (["refs/tags/rejected"], "refs/tags/rejected"),
        (["refs/tags/rejected/iris/v1.0.01"], None),  # a neighbour only
        (["refs/tags/rejected/irish/v1.0.0"], None),
    ],
)
def test_what_stands_in_a_tags_way(refs: list[str], blocking: str | None) -> None:
    assert ref_in_the_way("rejected/iris/v1.0.0", refs) == blocking


def test_names_and_versions_are_parsed_once_at_the_edge() -> None:
    name = ModelName.parse("iris")
    assert ModelName.parse(name) is name
    version = ModelVersion.parse("1.0.0")
    assert ModelVersion.parse(version) is version
    assert version_arg("v1.4.0") == "1.4.0" and version_arg("1.4.0") == "1.4.0"
    assert version_arg("v1.x") == "v1.x"  # left as typed, so the refusal names it
    for bad in ("Iris", "-iris", "iris-", "a" * 64, "ir is"):
        with pytest.raises(BadInput):
            ModelName.parse(bad)
    for bad in ("v1.0.0", "1.0", "1.0.0+b", ""):
        with pytest.raises(BadInput):
            ModelVersion.parse(bad)


# --- a revert's outcome ------------------------------------------------------------------

NOTHING = RevertPlan("iris", "1.0.0", "1.0.0", A, 3, None, "", "iris is already at 1.0.0")
PLANNED = RevertPlan("iris", "1.1.0", "1.0.0", A, 4, None, "Revert ...")


@pytest.mark.parametrize(
    ("result", "kind", "note", "redeploys"),
    [
        (RevertResult(NOTHING, None), "nothing-to-do", "iris is already at 1.0.0", True),
        (
            RevertResult(NOTHING, None, pushed=True),
            "nothing-to-do",
            "iris is already at 1.0.0; already reverted on the remote: run `git pull`",
            False,  # this clone has not pulled the remote's revert: nothing new to serve
        ),
        (  # only tags the remote lacked were published
            RevertResult(NOTHING, Landed(None, (), "origin", carried=("stable/iris/v1.0.0",))),
            "nothing-to-do",
            "iris is already at 1.0.0",
            True,
        ),
        (
            RevertResult(PLANNED, Landed(B, (), "origin", already_there=True), pushed=True),
            "already-on-the-remote",
            "iris is already reverted on origin: the same revert (1.1.0 -> 1.0.0) landed first",
            True,
        ),
        (RevertResult(PLANNED, Landed(B, ("rejected/iris/v1.1.0",))), "reverted", None, True),
    ],
)
def test_a_revert_says_what_it_did_once(
    result: RevertResult, kind: str, note: str | None, redeploys: bool
) -> None:
    assert (result.kind, result.note, result.redeploys) == (kind, note, redeploys)
    doc = result.to_json()
    if kind == "reverted":
        assert doc["commit"] == B and doc["tags"] == ["rejected/iris/v1.1.0"]
        assert (doc["from"], doc["to"], doc["serial"]) == ("1.1.0", "1.0.0", 4)
        assert "message" not in doc
    else:
        assert doc == {"changed": False, "note": note}
