"""Moving to a shared store keeps every rollback target (docs/ARCHITECTURE.md,
"The artifact store"): releases made before `store:` was committed live in the
releasing clone's local store; `store migrate` copies what every verified
release and weight pin needs to the team's store (a real S3-compatible server,
moto, on 127.0.0.1), and another clone then deploys them, the stable one
included. Two clones share a bare remote; every process is stopped by PID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from releasectl.loopback import free_port
from testing.bentos import iris_registry
from testing.processes import state_home
from testing.repos import Repo, clone, git
from testing.s3 import CREDENTIALS, moto_server

pytestmark = pytest.mark.slow

BUCKET = "team-bucket"
STORE = f"s3://{BUCKET}/releasectl"


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[fsspec.AbstractFileSystem]:
    with moto_server(tmp_path) as url:
        for key, value in {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": url}.items():
            monkeypatch.setenv(key, value)
        fs = fsspec.filesystem(
            "s3", endpoint_url=url, key="testing", secret="testing", skip_instance_cache=True
        )
        fs.mkdir(BUCKET)
        yield fs


def _stored(s3: fsspec.AbstractFileSystem) -> set[str]:
    s3.invalidate_cache()
    root = f"{BUCKET}/releasectl/"
    return {p.removeprefix(root) for p in s3.find(root) if not p.endswith(".json")}


def test_migrate_then_commit_store_and_another_clone_deploys_every_release(
    s3: fsspec.AbstractFileSystem, tmp_path: Path
) -> None:
    a: Repo = iris_registry(tmp_path / "a", free_port())
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    a.git("remote", "add", "origin", str(bare))
    with state_home(tmp_path / "home-a"):
        first = json.loads(a.ok("release", "iris", "1.0.0", "--json"))
        a.ok("mark-stable", "iris", "1.0.0")
        second = json.loads(a.ok("release", "iris", "1.1.0", "--json"))
        # The wrong order first: `store:` committed before anything was migrated.
        a.write(".releasectl/config.yaml", f"store: {STORE}\n")
        a.commit("the team's store is on S3")
        a.git("push", "-q", "--follow-tags", "origin", "main")
        pushed_tags = a.git("tag", "--list")
        a.git("push", "-q", "origin", *pushed_tags.split())

    b = clone(bare, tmp_path / "b", a.key, a.email)
    with state_home(tmp_path / "home-b"):
        stranded = b.cli("deploy", "iris", "--version", "1.0.0")
        assert stranded.returncode == 1, stranded.stderr
        [line] = stranded.stderr.strip().splitlines()
        assert "local artifact store of the clone that released it" in line
        assert f"releasectl store migrate --to {STORE}" in line

    bundles = {f"bundles/{r['digest'].removeprefix('sha256:')}.bento" for r in (first, second)}
    weights = {m["key"] for m in first["trained"]["models"]}
    with state_home(tmp_path / "home-a"):
        dry = json.loads(a.ok("store", "migrate", "--to", STORE, "--dry-run", "--json"))
        assert (dry["would_copy"], dry["copied"], dry["missing"]) == (3, 0, 0)
        assert _stored(s3) == set()  # a dry run writes nothing

        done = a.cli("store", "migrate", "--to", STORE)
        assert done.returncode == 0, done.stderr
        assert "3 copied, 0 already in" in done.stdout
        assert "copying bundles/" in done.stderr  # progress, one step per artifact
        assert _stored(s3) == bundles | weights
        used = {a["key"]: set(a["used_by"]) for a in dry["artifacts"]}
        [weights_key] = weights
        assert used[weights_key] == {"iris 1.0.0", "iris 1.1.0", "iris 1.1.0 (the branch)"}

        again = json.loads(a.ok("store", "migrate", "--to", STORE, "--json"))
        assert (again["copied"], again["present"]) == (0, 3)  # idempotent

    b.git("pull", "-q")
    with state_home(tmp_path / "home-b"):
        stable = json.loads(b.ok("deploy", "iris", "--version", "1.0.0", "--json"))
        assert stable["version"] == "1.0.0"
        built = json.loads(b.ok("build", "iris", "1.1.0", "--json"))
        assert built["reused"] is True and built["digest"] == second["digest"]
        rebuilt = json.loads(b.ok("build", "iris", "1.0.0", "--rebuild", "--json"))
        assert rebuilt["digest"] == first["digest"]  # the pinned weights were migrated too
