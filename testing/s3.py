"""A real S3-compatible server for tests: moto in server mode on a free
loopback port, stopped by PID when the block ends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from releasectl.loopback import free_port

READY_DEADLINE_S = 60.0
# What every releasectl process of a test inherits: the usual AWS variables and
# fsspec's own environment setting for the endpoint (read when fsspec is imported).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server(log_dir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The server's URL; `env` adds to the server's environment (e.g. moto's
    `INITIAL_NO_AUTH_ACTION_COUNT=0`, which makes it check credentials)."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert server, "moto[server] is a dev dependency: moto_server must be installed"
    port = free_port()
    log_path = log_dir / f"moto-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [server, "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/moto-api/", timeout=1.0).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "moto_server never answered"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
