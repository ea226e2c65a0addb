"""`history` and `show` say what verifies, remembered on disk per trust root:
real git, real SSH keys, a real (broken on purpose) ssh-keygen to prove when
no signature is checked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testing.histories import release
from testing.repos import Repo, make_key

MANIFEST = "model-releases/iris/release.yaml"


def broken_ssh_keygen(tmp_path: Path) -> dict[str, str]:
    """An environment whose ssh-keygen always fails: any signature check made
    under it fails, so a release reported verified was judged from the cache."""
    bin_dir = tmp_path / "broken-bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "ssh-keygen"
    fake.write_text("#!/bin/sh\necho 'ssh-keygen is broken on purpose' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def history(repo: Repo, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    proc = repo.cli("history", "iris", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return [row for row in json.loads(proc.stdout) if row["kind"] == "release"]


def many_releases(repo: Repo, count: int) -> None:
    """`count` signed releases of iris made with git itself (a releasectl
    release per version would take minutes): signed commit declaring the
    version, signed annotated tag."""
    script = r"""
set -e
m=model-releases/iris/release.yaml
i=1
while [ "$i" -le "$COUNT" ]; do
  sed -i "s/^version: .*/version: 1.0.$i/; s/^serial: .*/serial: $i/" "$m"
  git add "$m"
  git commit -q -S -m "Release iris 1.0.$i"
  git tag -s -m "iris 1.0.$i" "release/iris/v1.0.$i"
  i=$((i + 1))
done
"""
    subprocess.run(
        ["bash", "-c", script],
        cwd=repo.path,
        env={**os.environ, "COUNT": str(count)},
        check=True,
        capture_output=True,
    )


def test_history_tells_verified_releases_from_hand_made_tags(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    release(registry, "iris", "1.1.0")
    head = registry.head()
    registry.git("tag", "-a", "--no-sign", "-m", "trust me", "release/iris/v2.0.0", head)
    registry.git("tag", "release/iris/v3.0.0", head)  # lightweight
    registry.git("tag", "stable/iris/v1.1.0", head)  # a lightweight mark
    rows = {row["version"]: row for row in history(registry)}
    assert rows["1.0.0"]["verified"] and rows["1.0.0"]["stable"]
    assert rows["1.1.0"]["verified"] and not rows["1.1.0"]["stable"]
    assert rows["1.1.0"]["ignored"] == [
        "stable/iris/v1.1.0: lightweight tag (not annotated, not signed)"
    ]
    assert rows["2.0.0"]["verified"] is False and "not signed" in rows["2.0.0"]["problem"]
    assert rows["3.0.0"]["verified"] is False and "lightweight" in rows["3.0.0"]["problem"]
    text = registry.cli("history", "iris")
    assert text.returncode == 0
    assert "NO: lightweight tag" in text.stdout
    assert "ignored 1 mark(s) that do not verify: stable/iris/v1.1.0" in text.stderr
    shown = json.loads(registry.ok("show", "iris", "--json"))
    # The forged mark decides nothing: 1.0.0 is still the last stable release.
    assert shown["last_stable"] == "1.0.0"
    assert shown["stable"] is False and shown["verified"] is True
    assert shown["ignored"] == ["stable/iris/v1.1.0: lightweight tag (not annotated, not signed)"]


@pytest.mark.slow
def test_verdicts_on_500_releases_are_remembered_survive_gc_and_follow_the_trust_root(
    registry: Repo, tmp_path: Path
) -> None:
    registry.add_model("iris")
    many_releases(registry, 500)
    head = registry.head()
    registry.git("tag", "-a", "--no-sign", "-m", "hand-made", "release/iris/v2.0.0", head)
    cold = history(registry)
    assert len(cold) == 501
    assert [r["version"] for r in cold if not r["verified"]] == ["2.0.0"]
    assert all(r["verified"] for r in cold if r["version"] != "2.0.0")

    broken = broken_ssh_keygen(tmp_path)
    assert history(registry, env=broken) == cold  # warm: judged from the cache alone
    registry.git("gc", "-q", "--aggressive", "--prune=now")
    assert history(registry, env=broken) == cold  # object ids, and the cache, survive gc

    # Another trust root (here CI's override, with one more signer): nothing
    # judged under the old one counts, every verdict is made again.
    other = make_key(tmp_path / "keys", "teammate")
    signers = registry.path / ".releasectl/allowed_signers"
    pub = " ".join(other.with_name("teammate.pub").read_text().split()[:2])
    wider = tmp_path / "allowed_signers"
    wider.write_text(signers.read_text() + f"teammate@example.test {pub}\n")
    override = {"RELEASECTL_ALLOWED_SIGNERS": str(wider)}
    assert not any(r["verified"] for r in history(registry, env={**broken, **override}))
    assert [r["version"] for r in history(registry, env=override) if not r["verified"]] == ["2.0.0"]
