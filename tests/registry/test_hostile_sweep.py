"""The attacker sweep (docs/THREATS.md): every write a keyless tag pusher or a
keyless branch pusher can make to the remote, each tried alone before an
operator's `revert --push`, and the revert lands: its signed commit is on the
remote's branch, records the rejection in its trailers, and names any ref in
the way of `rejected/iris/v1.1.0` with the command that removes it.

Git only: one registry built per module and copied per case; the attacker is
a clone whose SSH key is in no allowed-signers file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from testing.hostile import World, build_world, copy_world
from testing.repos import Repo

NEEDED = "rejected/iris/v1.1.0"  # the tag the incident's revert makes


@dataclass(frozen=True)
class Write:
    name: str
    do: Callable[[Repo], None]
    blocks: str | None = None  # the ref left in the way of NEEDED, when there is one


def _tag(form: str, name: str, target: str) -> Callable[[Repo], None]:
    def do(a: Repo) -> None:
        # A genuine signed tag object, read before any name is cleared.
        genuine = "release/iris/v1.0.0" if name.startswith("release/") else "stable/iris/v1.0.0"
        if genuine == name:
            genuine = "release/iris/v1.1.0"
        genuine_object = a.git("rev-parse", f"refs/tags/{genuine}")
        parts = name.split("/")
        for end in range(1, len(parts) + 1):  # clear the attacker's own refs in the way
            a.git("update-ref", "-d", f"refs/tags/{'/'.join(parts[:end])}", check=False)
        if form == "lightweight":
            a.git("tag", name, target)
        elif form == "annotated":
            a.git("tag", "-a", "--no-sign", "-m", "looks fine", name, target)
        elif form == "signed":  # by the attacker's own key, in no allowed-signers file
            a.git("tag", "-s", "-m", "looks fine", name, target)
        else:  # copied: a genuine signed tag object under another name
            a.git("update-ref", f"refs/tags/{name}", genuine_object)
        # The remote refuses what cannot exist beside its refs (`release/iris/v1.1.0/x`
        # while `release/iris/v1.1.0` is there): that write is then not one they can make.
        a.git("push", "-q", "--force", "origin", f"refs/tags/{name}", check=False)

    return do


def _delete(name: str) -> Callable[[Repo], None]:
    def do(a: Repo) -> None:
        a.git("push", "-q", "origin", f":refs/tags/{name}")

    return do


def _tag_writes() -> list[Write]:
    writes = []
    for kind in ("release", "stable", "rejected"):
        names = [f"{kind}/iris/v1.1.0", f"{kind}/iris/v1.0.0", f"{kind}/iris/v2.0.0"]
        below = f"{kind}/iris/v1.1.0/x"
        # a ref where a folder must be: only possible where no registry tag sits below
        above = [f"{kind}/iris", kind] if kind == "rejected" else []
        for name in [*names, below, *above]:
            forms = ["lightweight", "signed"]
            forms += ["copied"] if name in names[:2] else []
            forms += ["annotated"] if name == below else []
            for form in forms:
                blocks = None
                if kind == "rejected" and name in (NEEDED, below, *above):
                    blocks = f"refs/tags/{name}"
                writes.append(Write(f"{form}:{name}", _tag(form, name, "HEAD"), blocks))
    for name in ("release/iris/v1.0.0", "stable/iris/v1.0.0", "release/iris/v1.1.0"):
        writes.append(Write(f"delete:{name}", _delete(name)))
    return writes


def _commit(paths: dict[str, str | None]) -> Callable[[Repo], None]:
    def do(a: Repo) -> None:
        for rel, text in paths.items():
            if rel.endswith("release.yaml") and text is None:  # set back to the stable version
                manifest = a.path / rel
                manifest.write_text(manifest.read_text().replace("1.1.0", "1.0.0"))
            elif text is None:
                a.git("rm", "-q", "-r", rel)
            else:
                a.write(rel, text)
        a.commit("unsigned", sign=False)
        a.git("push", "-q", "origin", "main")

    return do


def _merge(a: Repo) -> None:
    a.git("checkout", "-q", "-b", "side")
    a.write("model-releases/iris/service.py", "# changed on a side branch\n")
    a.commit("side", sign=False)
    a.git("checkout", "-q", "main")
    a.git("merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "merge", "side")
    a.git("push", "-q", "origin", "main")


def _branch_writes() -> list[Write]:
    attacker_signer = 'attacker@example.test namespaces="git" ssh-ed25519 AAAA\n'
    commits: dict[str, dict[str, str | None]] = {
        "unrelated-file": {"docs/notes.md": "# notes\n"},
        "model-source": {"model-releases/iris/service.py": "# backdoor\n"},
        "model-extra-file": {"model-releases/iris/extra.py": "import os\n"},
        "manifest-garbage": {"model-releases/iris/release.yaml": "{{{ not yaml\n"},
        "manifest-version": {"model-releases/iris/release.yaml": None},
        "model-removed": {"model-releases/iris": None},
        "allowed-signers": {".releasectl/allowed_signers": attacker_signer},
        "config": {".releasectl/config.yaml": "notify:\n  command: [touch, /tmp/pwned]\n"},
        "config-garbage": {".releasectl/config.yaml": "{{{ not yaml\n"},
        "lock": {".releasectl/requirements.lock": "evil==1.0 --hash=sha256:00\n"},
        "workflow": {".github/workflows/release.yml": "on: push\njobs: {}\n"},
    }
    writes = [Write(f"commit:{name}", _commit(paths)) for name, paths in commits.items()]
    return [*writes, Write("commit:merge", _merge)]


WRITES = {w.name: w for w in [*_tag_writes(), *_branch_writes()]}


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("sweep-world"))


@pytest.mark.parametrize("write", list(WRITES))
def test_no_keyless_write_stops_the_incident_revert(
    shared_world: World, tmp_path: Path, write: str
) -> None:
    world = copy_world(shared_world, tmp_path / "w")
    case = WRITES[write]
    case.do(world.attacker)
    op = world.operator
    proc = op.cli("revert", "iris", "--push", "--reason", "incident")
    assert proc.returncode == 0, (write, proc.stdout, proc.stderr)
    head = op.head()
    assert world.remote_ref("refs/heads/main") == head
    body = op.git("log", "-1", "--format=%B", head)
    assert "Releasectl-Revert-From: 1.1.0" in body and "Releasectl-Revert-To: 1.0.0" in body
    signers = shared_world.operator.path / ".releasectl" / "allowed_signers"  # as trusted
    assert 'Good "git" signature for operator@example.test' in _verify(op, head, signers)
    if case.blocks is not None:
        assert case.blocks in proc.stdout, proc.stdout
        assert f"git push origin :{case.blocks}" in proc.stdout, proc.stdout
    else:
        assert world.remote_ref(f"refs/tags/{NEEDED}") is not None, proc.stdout


def _verify(op: Repo, commit: str, signers: Path) -> str:
    import subprocess

    proc = subprocess.run(
        ["git", "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", commit],
        cwd=op.path,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stderr
