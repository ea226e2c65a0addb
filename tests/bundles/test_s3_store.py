"""The artifact store on S3, against a real S3-compatible server (moto in
server mode) on 127.0.0.1: release, build, deploy through it; a tampered
object is refused. The client is the real one (s3fs through fsspec),
configured the way a team configures it: `store: s3://…` committed in
.releasectl/config.yaml, credentials and endpoint in the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import httpx
import pytest

from releasectl.loopback import free_port
from testing.bentos import SETOSA, iris_registry
from testing.processes import state_home
from testing.repos import Repo

pytestmark = pytest.mark.slow

BUCKET = "team-bucket"
READY_DEADLINE_S = 60.0


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[fsspec.AbstractFileSystem]:
    """moto's S3 server on a free loopback port, stopped by PID at the end; the
    environment every releasectl process of the test inherits points at it."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert server, "moto[server] is a dev dependency: moto_server must be installed"
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            assert proc.poll() is None, (tmp_path / "moto.log").read_text()
            try:
                if httpx.get(f"{url}/moto-api/", timeout=1.0).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "moto_server never answered"
            time.sleep(0.1)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            # fsspec's own environment configuration: endpoint_url for every s3:// use.
            "FSSPEC_S3_ENDPOINT_URL": url,
        }.items():
            monkeypatch.setenv(key, value)
        fs = fsspec.filesystem(
            "s3", endpoint_url=url, key="testing", secret="testing", skip_instance_cache=True
        )
        fs.mkdir(BUCKET)
        yield fs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
        log.close()


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
