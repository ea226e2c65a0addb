"""A registry with a bare remote and a keyless attacker beside it, built once
and copied per test: what the name-binding tests and the attacker sweep share
(docs/THREATS.md). Real git, real SSH keys, a bare remote."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from testing.histories import release
from testing.repos import Repo, clone, git, make_key, new_repo


@dataclass
class World:
    operator: Repo  # holds a trusted key
    bare: Path  # the remote
    attacker: Repo  # a clone whose key is in no allowed-signers file

    def remote_refs(self) -> dict[str, str]:
        out = git(self.bare, "for-each-ref", "--format=%(refname) %(objectname)")
        return {ref: oid for ref, _, oid in (line.partition(" ") for line in out.splitlines())}

    def remote_ref(self, ref: str) -> str | None:
        return git(self.bare, "rev-parse", "-q", "--verify", ref, check=False) or None


def build_world(root: Path) -> World:
    """iris 1.0.0 released and marked stable, 1.1.0 released on top (the one
    an incident reverts), everything pushed to a bare remote."""
    operator = new_repo(root)
    bare = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    operator.add_model("iris")
    release(operator, "iris", "1.0.0", stable=True)
    operator.write("model-releases/iris/service.py", "# iris 1.1.0\n")
    operator.commit("iris 1.1.0")
    release(operator, "iris", "1.1.0")
    operator.git("remote", "add", "origin", str(bare))
    operator.git("push", "-q", "-u", "origin", "main", "--tags")
    key = make_key(root / "keys", "attacker-key")
    attacker = clone(bare, root / "attacker", key, "attacker@example.test")
    attacker.git("fetch", "-q", "--tags", "origin")
    return World(operator, bare, attacker)


def copy_world(world: World, dest: Path) -> World:
    """The world copied under `dest`, each copy's remote and keys its own."""
    root = world.operator.path.parent
    shutil.copytree(root, dest, symlinks=True)

    def moved(path: Path) -> Path:
        return dest / path.relative_to(root)

    operator = Repo(moved(world.operator.path), moved(world.operator.key), world.operator.email)
    attacker = Repo(moved(world.attacker.path), moved(world.attacker.key), world.attacker.email)
    bare = moved(world.bare)
    for repo in (operator, attacker):
        repo.git("remote", "set-url", "origin", str(bare))
        repo.git("config", "user.signingkey", str(repo.key))
    return World(operator, bare, attacker)
