"""A `check` finding carries its error class, not a bare exit code
(docs/ARCHITECTURE.md, "Errors by kind"); the check fails with the most
serious kind present, and `--json` keeps its shape."""

from __future__ import annotations

from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.git import GitError
from releasectl.pipeline.check import Report


def test_findings_carry_their_error_class_and_the_worst_kind_decides() -> None:
    report = Report("b" * 40, "h" * 40, ["iris"])
    report.add("iris", "manifest", True, "valid")
    report.warn("iris", "analysis", "thresholds are the defaults")
    assert (report.error, report.code) == (None, 0)

    report.add("iris", "bundle", False, "does not build: git failed", GitError)
    assert (report.error, report.code) == (OperationFailed, 1)
    report.add("fraud", "manifest", False, "unknown key 'stor'", BadInput)
    assert (report.error, report.code) == (BadInput, 2)
    report.add("commits", "signed", False, "not signed\nby an allowed signer", Refused)
    assert (report.error, report.code) == (Refused, 3)  # trust and policy first

    assert [f.error for f in report.findings] == [None, None, GitError, BadInput, Refused]
    assert [f.to_json() for f in report.findings][2:] == [
        {
            "subject": "iris",
            "check": "bundle",
            "ok": False,
            "detail": "does not build: git failed",
            "code": 1,
        },
        {
            "subject": "fraud",
            "check": "manifest",
            "ok": False,
            "detail": "unknown key 'stor'",
            "code": 2,
        },
        {
            "subject": "commits",
            "check": "signed",
            "ok": False,
            "detail": "not signed by an allowed signer",
            "code": 3,
        },
    ]
    assert report.findings[0].to_json() == {
        "subject": "iris",
        "check": "manifest",
        "ok": True,
        "detail": "valid",
        "code": 0,
    }
