"""Moving to a shared store keeps every rollback target (docs/ARCHITECTURE.md,
"The artifact store"): releases made before `store:` was committed live in the
releasing clone's local store; `store migrate` copies what every verified
release and weight pin needs to the team's store (a real S3-compatible server,
moto, on 127.0.0.1), and another clone then deploys them, the stable one
included. Two clones share a bare remote; every process is stopped by PID."""

from __future__ import annotations

import json
import shutil
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


def test_migrate_refuses_one_store_for_both_tampered_weights_and_reports_what_is_missing(
    tmp_path: Path,
) -> None:
    """Local folders as stores: the same store on both sides is bad input (exit 2);
    weights whose bytes are not their pin are refused (exit 3) and never reach the
    team's store; an artifact in neither store is reported in the `--json` document
    of a failed run (exit 1), after the rest was copied."""
    a: Repo = iris_registry(tmp_path / "a", free_port())
    source = tmp_path / "laptop-store"
    with state_home(tmp_path / "home"):
        released = a.cli("release", "iris", "1.0.0", env={"RELEASECTL_STORE": str(source)})
        assert released.returncode == 0, released.stderr
    [weights] = list((source / "weights").glob("*.bentomodel"))
    [bundle] = list((source / "bundles").glob("*.bento"))

    same = a.cli("store", "migrate", "--from", str(source), "--to", str(source))
    assert same.returncode == 2, same.stderr
    assert "is both the source and the destination" in same.stderr.strip().splitlines()[0]

    team = tmp_path / "team-store"
    tampered = tmp_path / "tampered-store"
    shutil.copytree(source, tampered)
    target = tampered / "weights" / weights.name
    target.write_bytes(target.read_bytes() + b"\0")
    refused = a.cli("store", "migrate", "--from", str(tampered), "--to", str(team))
    assert refused.returncode == 3, refused.stderr
    [line] = refused.stderr.strip().splitlines()[-1:]
    assert weights.stem in line and "but iris 1.0.0" in line and "pins" in line
    assert not (team / "weights" / weights.name).exists()

    bundle.unlink()
    (source / "bundles" / f"{bundle.stem}.json").unlink(missing_ok=True)
    other = tmp_path / "other-team-store"
    missing = a.cli("store", "migrate", "--from", str(source), "--to", str(other), "--json")
    assert missing.returncode == 1, missing.stderr
    report = json.loads(missing.stdout)
    assert (report["missing"], report["copied"]) == (1, 1)
    assert "in neither store" in missing.stderr and bundle.name in missing.stderr
    assert (other / "weights" / weights.name).is_file()  # the rest was copied
