"""The trust root cannot be smuggled in: its history is read along the first
parent only, OpenPGP signatures count only through listed fingerprints, and
`ci setup` never falls back to the repository's file without being told."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.histories import release
from testing.repos import Repo, make_key

SIGNERS = ".releasectl/allowed_signers"
MANIFEST = "model-releases/iris/release.yaml"
MALLORY = "mallory@example.test"
ANALYSIS = "analysis:\n  interval: 10s\n  bake: 1m\n  metrics:\n    error_rate: {max: 0.05}\n"


def _pub(key: Path) -> str:
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


def _trusted_ssh(repo: Repo, rev: str = "HEAD") -> str:
    from releasectl.git import open_repo
    from releasectl.view import trust_root

    return trust_root(open_repo(repo.path), rev).ssh


def _smuggle(repo: Repo, mallory: Path, *, sign_merge: bool) -> None:
    """Mallory (push rights, no trusted key) writes an allowed-signers file with
    only her key in an unrelated history, unsigned, and merges it into main."""
    repo.git("checkout", "-q", "--orphan", "side")
    repo.git("rm", "-r", "-q", "--cached", ".")
    (repo.path / SIGNERS).write_text(f"{MALLORY} {_pub(mallory)}\n")
    repo.git("add", SIGNERS)
    repo.git("commit", "-q", "--no-gpg-sign", "-m", "a fresh start")
    repo.git("checkout", "-q", "-f", "main")
    repo.git("config", "user.signingkey", str(mallory))
    repo.git("config", "user.email", MALLORY)
    repo.git(
        "merge",
        "-q",
        "--allow-unrelated-histories",
        "--no-ff",
        "-X",
        "theirs",
        "-S" if sign_merge else "--no-gpg-sign",
        "-m",
        "merge side",
        "side",
    )
    assert (repo.path / SIGNERS).read_text() == f"{MALLORY} {_pub(mallory)}\n"


@pytest.mark.parametrize("sign_merge", [False, True], ids=["unsigned-merge", "self-signed-merge"])
def test_a_merge_from_an_unrelated_history_does_not_become_the_root(
    registry: Repo, tmp_path: Path, sign_merge: bool
) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    operator = _pub(registry.key)
    mallory = make_key(tmp_path / "m", "mallory")
    _smuggle(registry, mallory, sign_merge=sign_merge)
    # Her release: a commit and a tag signed with her key.
    registry.write("model-releases/iris/service.py", "# mallory was here\n")
    registry.commit("iris: faster")
    text = (registry.path / MANIFEST).read_text()
    registry.write(MANIFEST, text.replace("version: 1.0.0", "version: 2.0.0"))
    registry.commit("iris 2.0.0")
    registry.git("tag", "-s", "-m", "iris 2.0.0", "release/iris/v2.0.0", "HEAD")

    trusted = _trusted_ssh(registry)
    assert operator in trusted and _pub(mallory) not in trusted
    proc = registry.cli("verify", "iris", "2.0.0", "--json")
    assert proc.returncode == 3, proc.stderr
    checks = json.loads(proc.stdout)["checks"]
    assert not checks[0]["ok"] and "not in the allowed signers" in checks[0]["detail"]
    # The operator's own release still verifies: the root is still the operator's.
    assert registry.cli("verify", "iris", "1.0.0").returncode == 0


def test_a_trusted_signer_can_still_merge_a_change_to_the_trust_root(
    registry: Repo, tmp_path: Path
) -> None:
    """The safe outcome is not "merges never count": a merge signed by a key
    trusted before it is a change like any other."""
    bob = make_key(tmp_path / "b", "bob")
    registry.git("checkout", "-q", "-b", "add-bob")
    with (registry.path / SIGNERS).open("a") as f:
        f.write(f"bob@example.test {_pub(bob)}\n")
    registry.commit("add bob", sign=False)
    registry.git("checkout", "-q", "main")
    registry.write("docs/x.md", "x\n")
    registry.commit("docs")
    registry.git("merge", "-q", "--no-ff", "-S", "-m", "merge add-bob", "add-bob")
    assert _pub(bob) in _trusted_ssh(registry)
    # ... and the same merge, unsigned, does not count.
    registry.git("reset", "-q", "--hard", "HEAD^")
    registry.git("merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "merge add-bob", "add-bob")
    assert _pub(bob) not in _trusted_ssh(registry)


@pytest.fixture
def gnupg() -> Iterator[dict[str, str]]:
    # GnuPG's agent socket breaks with a long GNUPGHOME: keep it short.
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    os.environ["GNUPGHOME"] = str(home)
    try:
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
        del os.environ["GNUPGHOME"]
        subprocess.run(["rm", "-rf", str(home)], check=False)


def _gpg_key(env: dict[str, str], uid: str) -> str:
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        env=env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--fingerprint", "--", uid],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.mark.parametrize("who", ["operator", "mallory"], ids=["trusted-email", "own-email"])
def test_an_openpgp_key_counts_only_through_allowed_openpgp(
    registry: Repo, gnupg: dict[str, str], who: str
) -> None:
    """A good OpenPGP signature whose user id is the committer's e-mail is
    not enough: the user id is whatever its maker typed. Variants: the uid of
    a trusted SSH signer, and Mallory's own (not in any trust file)."""
    email = registry.email if who == "operator" else MALLORY
    fingerprint = _gpg_key(gnupg, email)  # uid: the bare e-mail, as git's %GS shows it
    registry.add_model("iris")
    registry.write(MANIFEST, (registry.path / MANIFEST).read_text() + ANALYSIS)
    registry.commit("iris: analysis")
    release(registry, "iris", "1.0.0", stable=True)
    registry.git("checkout", "-q", "-b", "pr")
    text = (registry.path / MANIFEST).read_text()
    registry.write(
        MANIFEST, text.replace("version: 1.0.0", "version: 1.1.0").replace("serial: 1", "serial: 2")
    )
    registry.git("add", MANIFEST)
    registry.git(
        "-c",
        "gpg.format=openpgp",
        "-c",
        f"user.signingkey={fingerprint}",
        "-c",
        f"user.email={email}",
        "commit",
        "-q",
        "-S",
        "-m",
        "iris 1.1.0",
    )
    shown = registry.git("log", "-1", "--format=%G?|%GS|%ce")
    assert shown == f"G|{email}|{email}", shown  # a good signature, uid == committer
    proc = registry.cli("check", "--base", "main", "--no-build", "--json")
    assert proc.returncode == 3, proc.stdout
    signed = next(f for f in json.loads(proc.stdout)["findings"] if f["check"] == "signed")
    assert not signed["ok"] and "OpenPGP key not allowed" in signed["detail"]
    # Listed by a trusted signer, the same key counts.
    registry.git("checkout", "-q", "main")
    registry.write(".releasectl/allowed_openpgp", f"{email} {fingerprint}\n")
    registry.commit("allow the key")
    registry.git("checkout", "-q", "pr")
    registry.git("rebase", "-q", "--no-gpg-sign", "main")  # keeps no signature: sign again
    registry.git(
        "-c",
        "gpg.format=openpgp",
        "-c",
        f"user.signingkey={fingerprint}",
        "-c",
        f"user.email={email}",
        "commit",
        "-q",
        "--amend",
        "--no-edit",
        "-S",
    )
    proc = registry.cli("check", "--base", "main", "--no-build", "--json")
    assert proc.returncode == 0, proc.stdout


def _ci_setup(repo: Repo, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"RUNNER_TEMP": str(tmp_path / "runner"), "ALLOWED_SIGNERS": ""}
    (tmp_path / "runner").mkdir(exist_ok=True)
    return repo.cli("ci", "setup", env={**base, **env})


def test_ci_setup_refuses_to_fall_back_to_the_repository_silently(
    registry: Repo, tmp_path: Path
) -> None:
    from testing.wheels import wheelhouse

    proc = registry.cli("upgrade-workflows", "--no-index", "--find-links", str(wheelhouse()))
    assert proc.returncode == 0, proc.stderr
    registry.commit("lock")
    for env in ({}, {"ALLOWED_SIGNERS": "  \n"}, {"RELEASECTL_TRUST_REPOSITORY": "yes"}):
        proc = _ci_setup(registry, tmp_path, **env)
        assert proc.returncode == 3, (env, proc.stderr)
        assert "no trust root" in proc.stderr and "RELEASECTL_TRUST_REPOSITORY=1" in proc.stderr
        assert not (tmp_path / "runner/releasectl/allowed_signers").exists()
    proc = _ci_setup(registry, tmp_path, RELEASECTL_TRUST_REPOSITORY="1")
    assert proc.returncode == 0, proc.stderr
    assert "the repository's .releasectl/allowed_signers" in proc.stdout
    line = f"{registry.email} {_pub(registry.key)}"
    proc = _ci_setup(registry, tmp_path, ALLOWED_SIGNERS=line)
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / "runner/releasectl/allowed_signers"
    assert written.read_text() == line + "\n" and written.stat().st_mode & 0o777 == 0o600
