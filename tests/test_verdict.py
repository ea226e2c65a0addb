"""The one verdict shape, in-process: what a verdict says, and which verdicts
the on-disk memory keeps (docs/ARCHITECTURE.md, "What verifies, remembered")."""

from __future__ import annotations

import json
from pathlib import Path

from releasectl.registry.verified import _Cache
from releasectl.verdict import Verdict


def test_a_verdict_says_why_not_only_when_it_does_not_hold() -> None:
    good = Verdict.good("good SSH signature by an allowed signer", signer="a@example.test")
    bad = Verdict.bad("not signed", subject="release/iris/v1.0.0")
    assert (good.ok, good.problem, good.detail) == (
        True,
        None,
        "good SSH signature by an allowed signer",
    )
    assert (bad.ok, bad.problem, bad.subject) == (False, "not signed", "release/iris/v1.0.0")
    said = good.about("commit 0123456789ab")
    assert said.subject == "commit 0123456789ab"
    assert (said.ok, said.detail, said.signer) == (good.ok, good.detail, good.signer)


def test_the_memory_keeps_what_the_object_decided_and_forgets_what_the_machine_did(
    tmp_path: Path,
) -> None:
    path = tmp_path / "iris.json"
    cache = _Cache(path)
    cache.put("r good", Verdict.good("good SSH signature by an allowed signer"))
    cache.put("r unsigned", Verdict.bad("not signed"))
    # ssh-keygen failed: the verdict says nothing about the object, whatever its words.
    cache.put("r blind", Verdict.bad("ssh-keygen could not run", reached=False))
    cache.save()
    kept = json.loads(path.read_text())["verdicts"]
    assert kept == {"r good": [True, None], "r unsigned": [False, "not signed"]}
    assert cache.get("r blind") == Verdict.bad("ssh-keygen could not run", reached=False)
    assert cache.get("r unsigned") == Verdict.bad("not signed")
