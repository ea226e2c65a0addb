"""The trust root: who may sign, and how that list may change."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.histories import release
from testing.repos import Repo, git, make_key, new_repo

SIGNERS = ".releasectl/allowed_signers"


def _pub(key: Path) -> str:
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


def _use_key(repo: Repo, key: Path, email: str) -> None:
    repo.git("config", "user.signingkey", str(key))
    repo.git("config", "user.email", email)


def test_a_commit_that_adds_its_own_key_does_not_verify(registry: Repo, tmp_path: Path) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    mallory = make_key(tmp_path / "m", "mallory")
    _use_key(registry, mallory, "mallory@example.test")
    with (registry.path / SIGNERS).open("a") as f:
        f.write(f"mallory@example.test {_pub(mallory)}\n")
    registry.commit("trust me")  # signed by mallory's own, not yet trusted, key
    proc = registry.cli("release", "iris", "1.1.0")
    # Her key is not in the trust root in force: refused by trust before anything is made.
    assert proc.returncode == 3, proc.stderr
    assert "is not in the trust root for mallory@example.test" in proc.stderr
    # a release tag she makes by hand is refused too
    registry.git("tag", "-s", "-m", "x", "release/iris/v1.1.0", "HEAD")
    registry.git("tag", "-s", "-m", "x", "stable/iris/v1.1.0", "HEAD")
    out = registry.cli("verify", "iris", "1.1.0", "--json")
    assert out.returncode == 3
    checks = json.loads(out.stdout)["checks"]
    assert not checks[0]["ok"] and "not in the allowed signers" in checks[0]["detail"]
    assert registry.cli("revert", "iris", "--to", "1.1.0").returncode == 3


def test_a_key_added_by_a_trusted_signer_is_trusted(registry: Repo, tmp_path: Path) -> None:
    registry.add_model("iris")
    bob = make_key(tmp_path / "b", "bob")
    with (registry.path / SIGNERS).open("a") as f:
        f.write(f"bob@example.test {_pub(bob)}\n")
    registry.commit("add bob")  # signed by the operator, already trusted
    _use_key(registry, bob, "bob@example.test")
    release(registry, "iris", "1.0.0", stable=True)
    assert json.loads(registry.ok("verify", "iris", "1.0.0", "--json"))["ok"]


def test_removing_a_key_retires_it(registry: Repo, tmp_path: Path) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    bob = make_key(tmp_path / "b", "bob")
    (registry.path / SIGNERS).write_text(f"bob@example.test {_pub(bob)}\n")
    registry.commit("rotate: bob replaces the operator")
    proc = registry.cli("verify", "iris", "1.0.0")
    assert proc.returncode == 3 and "FAIL" in proc.stdout


def test_the_environment_overrides_the_trust_root(registry: Repo, tmp_path: Path) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    elsewhere = tmp_path / "ci_signers"
    elsewhere.write_text("nobody@example.test " + _pub(make_key(tmp_path / "n", "nobody")) + "\n")
    env = {"RELEASECTL_ALLOWED_SIGNERS": str(elsewhere)}
    assert registry.cli("verify", "iris", "1.0.0", env=env).returncode == 3
    elsewhere.write_text(f"{registry.email} {_pub(registry.key)}\n")
    assert registry.cli("verify", "iris", "1.0.0", env=env).returncode == 0


@pytest.fixture
def gnupg_home() -> Iterator[Path]:
    # GnuPG's agent socket breaks with a long GNUPGHOME: keep it short.
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "PGP Operator <pgp@example.test>",
            "ed25519",
            "sign",
            "never",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    os.environ["GNUPGHOME"] = str(home)
    yield home
    subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)
    del os.environ["GNUPGHOME"]
    subprocess.run(["rm", "-rf", str(home)], check=False)


def test_openpgp_signing_works_end_to_end(tmp_path: Path, gnupg_home: Path) -> None:
    path = tmp_path / "pgp"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for k, v in (
        ("user.email", "pgp@example.test"),
        ("user.name", "PGP Operator"),
        ("gpg.format", "openpgp"),
        ("user.signingkey", "pgp@example.test"),
    ):
        git(path, "config", k, v)
    repo = Repo(path, Path("/nonexistent"), "pgp@example.test")
    repo.ok("init")
    assert "pgp@example.test" in (path / ".releasectl/allowed_openpgp").read_text()
    repo.add_model("iris")
    release(repo, "iris", "1.0.0", stable=True)
    release(repo, "iris", "1.1.0")
    assert json.loads(repo.ok("verify", "iris", "1.0.0", "--json"))["ok"]
    repo.ok("revert", "iris", "--reason", "pgp drill")
    assert json.loads(repo.ok("show", "iris", "--json"))["version"] == "1.0.0"
    # a good signature by another key in the same keyring is not enough
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Other <other@example.test>",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    repo.git(
        "-c",
        "user.signingkey=other@example.test",
        "tag",
        "-s",
        "-m",
        "x",
        "release/iris/v1.0.5",
        "release/iris/v1.0.0^{commit}",
        env={"GIT_COMMITTER_EMAIL": "pgp@example.test"},
    )
    out = json.loads(repo.cli("verify", "iris", "1.0.5", "--json").stdout)
    assert out["ok"] is False


def test_init_in_a_repository_without_a_signing_key(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "gpg.format", "ssh")
    repo = Repo(path, Path("/nonexistent"), "operator@example.test")
    proc = repo.cli("init")
    assert proc.returncode == 1 and "no signing key" in proc.stderr
    assert not (path / ".releasectl").exists()


def test_init_twice_is_a_no_op(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    before = repo.snapshot()
    assert "already a registry" in repo.ok("init")
    assert repo.snapshot() == before
