"""The artifact store on S3, against a real S3-compatible server (moto in
server mode) on 127.0.0.1: release, build, deploy through it; a tampered
object is refused. The client is the real one (s3fs through fsspec),
configured the way a team configures it: `store: s3://…` committed in
.releasectl/config.yaml, credentials and endpoint in the environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import fsspec
import httpx
import pytest

from releasectl.loopback import free_port
from testing.bentos import SETOSA, iris_registry
from testing.processes import state_home
from testing.repos import Repo
from testing.s3 import CREDENTIALS, moto_server

pytestmark = pytest.mark.slow

BUCKET = "team-bucket"


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[fsspec.AbstractFileSystem]:
    """moto's S3 server on a free loopback port, stopped by PID at the end; the
    environment every releasectl process of the test inherits points at it."""
    with moto_server(tmp_path) as url:
        for key, value in {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": url}.items():
            monkeypatch.setenv(key, value)
        fs = fsspec.filesystem(
            "s3", endpoint_url=url, key="testing", secret="testing", skip_instance_cache=True
        )
        fs.mkdir(BUCKET)
        yield fs


def _flip_last_byte(fs: fsspec.AbstractFileSystem, path: str) -> None:
    data = bytearray(fs.cat(path))
    data[-1] ^= 0xFF
    fs.pipe(path, bytes(data))


def test_release_build_and_deploy_through_s3_and_a_tampered_object_is_refused(
    s3: fsspec.AbstractFileSystem, tmp_path: Path
) -> None:
    repo: Repo = iris_registry(tmp_path, free_port())
    repo.write(".releasectl/config.yaml", f"store: s3://{BUCKET}/releasectl\n")
    repo.commit("the team's store is on S3")
    with state_home(tmp_path / "state") as home:
        out = json.loads(repo.ok("release", "iris", "1.0.0", "--json"))
        digest = out["digest"]
        bundle_key = f"bundles/{digest.removeprefix('sha256:')}.bento"
        [weights] = out["trained"]["models"]
        root = f"{BUCKET}/releasectl"
        s3.invalidate_cache()
        assert s3.exists(f"{root}/{bundle_key}") and s3.exists(f"{root}/{weights['key']}")
        assert not (home / "artifacts").exists()  # nothing went to a local default store

        built = json.loads(repo.ok("build", "iris", "1.0.0", "--json"))
        assert built["reused"] is True and built["digest"] == digest

        deployed = json.loads(repo.ok("deploy", "iris", "--json"))
        assert deployed["version"] == "1.0.0"
        port = json.loads(repo.ok("show", "iris", "--json"))["deploy"]["port"]
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"features": SETOSA}, timeout=30
        )
        assert answer.status_code == 200 and answer.json()["version"] == "1.0.0"

        _flip_last_byte(s3, f"{root}/{bundle_key}")
        tampered = repo.cli("build", "iris", "1.0.0")
        assert tampered.returncode == 3, tampered.stderr
        assert bundle_key in tampered.stderr

        _flip_last_byte(s3, f"{root}/{weights['key']}")
        rebuilt = repo.cli("build", "iris", "1.0.0", "--rebuild")
        assert rebuilt.returncode == 3, rebuilt.stderr
        assert weights["sha256"] in rebuilt.stderr
