"""Errors by kind (docs/ARCHITECTURE.md, "Errors by kind"): the watcher retries
a push the remote refused or that hung, and nothing else; a network git call
is bounded and its ssh never prompts.

Real git, real keys, a bare remote with real hooks. There is no ssh server
here, so an `ssh` on PATH stands in for the remote host: a mock that records
how git called it and runs the remote's git command locally."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from releasectl import git as g
from releasectl.pipeline import watch
from testing.hostile import World, build_world, copy_world
from testing.processes import wait_until
from testing.repos import git

# Records each push that reaches it (its pid), then never answers.
HANGS = '#!/bin/sh\necho $$ >> "$GIT_DIR/pushes"\nexec sleep 300\n'
# Declines the first {n} pushes (a remote in maintenance), then takes them.
DECLINES = """#!/bin/sh
n=$(wc -l < "$GIT_DIR/pushes" 2>/dev/null || echo 0)
echo $$ >> "$GIT_DIR/pushes"
[ "$n" -ge {n} ] || {{ echo "read-only for maintenance" >&2; exit 1; }}
"""
# The mock of the remote host: one line per call with its arguments, then the
# remote's command (`git-upload-pack '/path'`, the last argument) run here.
MOCK_SSH = """#!/bin/sh
printf '%s\\n' "$*" >> "$MOCK_SSH_LOG"
[ -z "$MOCK_SSH_HANG" ] || {{ echo $$ >> "$MOCK_SSH_HANG"; exec sleep 300; }}
for last; do :; done
exec sh -c "$last"
"""


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("push-world"))


@pytest.fixture
def world(shared_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setattr(watch, "RETRY_FIRST_S", 0.1)  # the backoff's first wait, not its rule
    return copy_world(shared_world, tmp_path / "w")


def _hook(bare: Path, text: str) -> None:
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(text)
    hook.chmod(0o755)


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _record(world: World, timeout: float) -> tuple[bool, str | None, list[str]]:
    """The watcher's record of a failed verdict: the revert of iris 1.1.0, pushed."""
    said: list[str] = []
    reverted, error = watch._record_revert(
        g.Git(world.operator.path), "iris", "analysis failed", True, timeout, said.append
    )
    return reverted is not None, error, said


def test_a_hung_push_times_out_and_is_retried_like_a_refused_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEASECTL_GIT_TIMEOUT", "1")
    _hook(world.bare, HANGS)
    before = world.remote_ref("refs/heads/main")

    done, error, said = _record(world, timeout=2.5)

    pushes = _pids(world.bare / "pushes")
    assert not done and error is not None
    assert "push to origin failed" in error and "no answer within 1 s" in error, error
    # Retried the way a refused push is, and the outcome says so.
    assert len(pushes) >= 2 and f"(tried {len(pushes)} times)" in error, (pushes, error)
    assert said and all("retrying" in line and "no answer" in line for line in said), said
    # Nothing landed, nothing is left half-made, and the hung hooks were stopped.
    assert world.remote_ref("refs/heads/main") == before
    assert world.remote_ref("refs/tags/rejected/iris/v1.1.0") is None
    assert world.operator.git("tag", "--list", "rejected/*") == ""
    assert not (g.git_dir(g.Git(world.operator.path)) / "releasectl" / "landing.json").exists()
    wait_until(lambda: not any(map(_running, pushes)), 10, "the hung hooks to be stopped")


def test_a_declined_push_is_retried_until_the_remote_takes_it(world: World) -> None:
    _hook(world.bare, DECLINES.format(n=2))

    done, error, said = _record(world, timeout=30)

    assert done and error is None, error
    assert len(_pids(world.bare / "pushes")) == 3
    assert len(said) == 2 and all("push to origin failed" in line for line in said), said
    head = world.remote_ref("refs/heads/main")
    assert head is not None
    assert "Releasectl-Revert-From: 1.1.0" in git(world.bare, "log", "-1", "--format=%B", head)


def test_a_remote_that_cannot_be_read_is_retried_like_a_refused_push(world: World) -> None:
    """A network blip while the push is planned (the fetch of the remote's tip
    fails) is the remote not taking the push: worth waiting out."""
    world.bare.rename(world.bare.with_name("away.git"))

    done, error, said = _record(world, timeout=0.5)

    assert not done and error is not None and "origin could not be read" in error, error
    assert said and "tried" in error, (said, error)


def _bad_signing_key(world: World) -> None:
    world.operator.git("config", "user.signingkey", str(world.operator.path / "no-such-key"))


def _untrusted_signer(world: World) -> None:
    """The revert is written by a clone whose key no allowed-signers file lists:
    its own commit does not verify, and it never will."""
    world.operator = world.attacker


@pytest.mark.parametrize(
    ("why", "setup"),
    [("signing key", _bad_signing_key), ("not in the trust root", _untrusted_signer)],
    ids=["bad-signing-key", "verification-refused"],
)
def test_a_failure_that_is_not_a_refused_push_is_not_retried(
    world: World, why: str, setup: Callable[[World], None]
) -> None:
    setup(world)
    _hook(world.bare, DECLINES.format(n=0))  # counts pushes, takes them all
    before = world.remote_ref("refs/heads/main")

    done, error, said = _record(world, timeout=30)

    assert not done and error is not None and why in error, error
    assert said == [] and "tried" not in error, (said, error)  # once, at once
    assert _pids(world.bare / "pushes") == []
    assert world.remote_ref("refs/heads/main") == before


# --- network git calls: bounded, and ssh never prompts -----------------------------------


@pytest.fixture
def over_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[g.Git, Path]:
    """A clone whose remote `origin` is `mock-host:<bare>`, reached through the
    mock ssh on PATH; returns the clone and the mock's call log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "ssh.log"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(MOCK_SSH.format())
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MOCK_SSH_LOG", str(log))
    for var in ("GIT_SSH", "GIT_SSH_COMMAND", "MOCK_SSH_HANG"):
        monkeypatch.delenv(var, raising=False)
    bare, work = tmp_path / "remote.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "first")
    git(work, "remote", "add", "origin", f"mock-host:{bare}")
    return g.Git(work), log


def _network_calls(repo: g.Git) -> None:
    assert g.push(repo, "origin", ["refs/heads/main:refs/heads/main"]).returncode == 0
    assert set(g.remote_refs(repo, "origin", ["refs/heads/main"])) == {"refs/heads/main"}
    g.fetch(repo, "origin", ["+refs/heads/main:refs/remotes/origin/main"])


@pytest.mark.parametrize(
    ("user_ssh", "prefix"),
    [
        ({}, ""),
        ({"core.sshCommand": "ssh -o IdentitiesOnly=yes"}, "-o IdentitiesOnly=yes "),
        ({"GIT_SSH_COMMAND": "ssh -p 2222"}, "-p 2222 "),
    ],
    ids=["default", "core.sshCommand", "GIT_SSH_COMMAND"],
)
def test_network_calls_run_ssh_in_batch_mode_with_a_connect_timeout(
    over_ssh: tuple[g.Git, Path],
    monkeypatch: pytest.MonkeyPatch,
    user_ssh: dict[str, str],
    prefix: str,
) -> None:
    repo, log = over_ssh
    monkeypatch.setenv("RELEASECTL_GIT_TIMEOUT", "7")
    for key, value in user_ssh.items():
        if key.isupper():
            monkeypatch.setenv(key, value)
        else:
            g.config_set(repo, key, value)

    _network_calls(repo)

    calls = log.read_text().splitlines()
    assert len(calls) == 3, calls  # push, ls-remote, fetch: each reached the mock host
    options = f"{prefix}-o BatchMode=yes -o ConnectTimeout=7 "
    assert all(call.startswith(options) for call in calls), calls
    assert [call.split("'")[0].split()[-1] for call in calls] == [
        "git-receive-pack",
        "git-upload-pack",
        "git-upload-pack",
    ]


@pytest.mark.parametrize("call", ["ls-remote", "fetch", "push"])
def test_a_remote_that_never_answers_is_a_timeout_not_a_hang(
    over_ssh: tuple[g.Git, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, call: str
) -> None:
    repo, _ = over_ssh
    hung = tmp_path / "hung"
    monkeypatch.setenv("RELEASECTL_GIT_TIMEOUT", "0.5")
    monkeypatch.setenv("MOCK_SSH_HANG", str(hung))
    run: Callable[[], object] = {
        "ls-remote": lambda: g.remote_refs(repo, "origin", ["refs/heads/main"]),
        "fetch": lambda: g.fetch(repo, "origin", ["refs/heads/main"]),
        "push": lambda: g.push(repo, "origin", ["refs/heads/main:refs/heads/main"]),
    }[call]

    with pytest.raises(g.GitTimeout) as raised:
        run()

    assert raised.value.line().startswith(f"`git {call}` got no answer within 0.5 s")
    assert "RELEASECTL_GIT_TIMEOUT" in raised.value.line()
    wait_until(lambda: not any(map(_running, _pids(hung))), 10, "the mock host to be stopped")
    assert _pids(hung)
