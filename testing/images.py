"""Real OCI machinery for the image tests: Debian's docker-registry on
127.0.0.1, the Python base image made from scripts/image-test-deps' root
filesystem tar, and the built image run with podman. Every process started here
is stopped here, by its PID."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from releasectl.loopback import free_port
from testing.bentos import READY_DEADLINE_S, STOP_GRACE_S
from testing.paths import ROOT

REPO = ROOT
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# podman's own defaults fail here: crun on the hybrid cgroup layout, and the
# default ulimits above this machine's hard limits.
PODMAN_RUN = [
    "--runtime",
    "runc",
    "--network",
    "host",
    "--ulimit",
    "nofile=1024:20000",
    "--ulimit",
    "nproc=4096:4096",
]


def base_tar() -> Path:
    """The root filesystem tar scripts/image-test-deps made (scripts/test runs it and
    names it in RELEASECTL_TEST_BASE_TAR). Tests never download it themselves."""
    named = os.environ.get("RELEASECTL_TEST_BASE_TAR")
    found = [Path(named)] if named else sorted((REPO / ".venv" / "images").glob("base-*.tar"))
    assert found and found[-1].is_file(), (
        "no Python base for the image tests: run scripts/image-test-deps (scripts/test does)"
    )
    return found[-1]


def storage_driver(scratch: Path) -> str:
    """overlay where this kernel lets buildah mount it (it shares the base's files
    instead of copying them: the image test takes about half as long), else vfs,
    which works in any container or VM. RELEASECTL_TEST_STORAGE_DRIVER decides."""
    chosen = os.environ.get("RELEASECTL_TEST_STORAGE_DRIVER")
    if chosen:
        return chosen
    buildah = ["buildah", *storage_args(scratch, "overlay")]
    try:
        container = run([*buildah, "from", "scratch"], timeout=60)
        mounted = subprocess.run([*buildah, "mount", container], capture_output=True, timeout=60)
        run([*buildah, "rm", container], timeout=60)
    except AssertionError:
        return "vfs"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(runroot(scratch), ignore_errors=True)
    return "overlay" if mounted.returncode == 0 else "vfs"


def runroot(storage: Path) -> Path:
    """The storage's run folder: short, because podman refuses a runroot longer than
    50 characters (pytest's temporary folders under xdist are longer)."""
    key = hashlib.sha256(str(storage.absolute()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"rc-run-{key}"


def storage_args(storage: Path, driver: str) -> list[str]:
    root = str(storage / "root")
    return ["--root", root, "--runroot", str(runroot(storage)), "--storage-driver", driver]


def run(argv: list[str], timeout: float = 600) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stderr}{proc.stdout}"
    return proc.stdout.strip()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_GRACE_S)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}:\n{log.read_text()}"
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} did not answer {url} in {READY_DEADLINE_S}s:\n{log.read_text()}")


@contextmanager
def docker_registry(root: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1:<free port>, plain HTTP, its data under
    root; yields its host:port."""
    root.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '{host}'}}\n"
    )
    log = root / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_http(f"http://{host}/v2/", proc, log, "docker-registry")
        yield host
    finally:
        _stop(proc)


def push_base(storage: Path, driver: str, destination: str) -> None:
    """The root filesystem tar as a one-layer image, committed straight to the registry."""
    buildah = ["buildah", *storage_args(storage, driver)]
    container = run([*buildah, "from", "scratch"])
    try:
        run([*buildah, "add", container, str(base_tar()), "/"])
        run([*buildah, "config", "--cmd", '["python3"]', container])
        run(
            [
                *buildah,
                "commit",
                "--quiet",
                "--timestamp",
                "0",
                "--tls-verify=false",
                container,
                f"docker://{destination}",
            ]
        )
    finally:
        run([*buildah, "rm", container])


def manifest(image: str, reference: str) -> httpx.Response:
    """The registry's own answer for a manifest, asked for in both formats."""
    host, _, name = image.partition("/")
    response = httpx.get(
        f"http://{host}/v2/{name}/manifests/{reference}",
        headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"},
        timeout=30,
    )
    response.raise_for_status()
    return response


@contextmanager
def podman_serving(storage: Path, driver: str, image_ref: str, log: Path) -> Iterator[str]:
    """`podman run` of the pinned image (pulled from the registry), serving on
    127.0.0.1:<free port>; yields the base URL. Stopped by its PID (podman passes
    the signal to the container), then removed."""
    port = free_port()
    cidfile = log.with_suffix(".cid")
    podman = ["podman", *storage_args(storage, driver)]
    argv = [
        *podman,
        "run",
        "--rm",
        "--cidfile",
        str(cidfile),
        "--tls-verify=false",
        *PODMAN_RUN,
        "--env",
        f"BENTOML_PORT={port}",
        "--env",
        "BENTOML_HOST=127.0.0.1",
        image_ref,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/readyz", proc, log, "podman run")
        yield url
    finally:
        _stop(proc)
        if cidfile.exists():
            subprocess.run(
                [*podman, "rm", "--force", "--ignore", "--cidfile", str(cidfile)],
                capture_output=True,
                timeout=60,
                check=False,
            )


def remove_storage(storage: Path, driver: str) -> None:
    """The test's containers (they may hold mounts), then the whole storage folder."""
    for argv in (["podman", "rm", "--all", "--force"], ["buildah", "rm", "--all"]):
        argv[1:1] = storage_args(storage, driver)
        subprocess.run(argv, capture_output=True, timeout=120, check=False)
    shutil.rmtree(storage, ignore_errors=True)
    shutil.rmtree(runroot(storage), ignore_errors=True)


def push_labelled(destination: str, labels: dict[str, str], scratch: Path) -> str:
    """An image with one empty layer and `labels`, written as an OCI layout by hand and
    copied to `destination` (`host:port/repository:tag`, plain HTTP) by skopeo: what a
    test pins when the image's content does not matter, only that the registry holds it
    with its labels (no builder, no base). Returns `repository@sha256:<hex>`."""
    import gzip
    import io
    import json
    import tarfile

    layout = scratch / "oci"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w"):
        pass
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {
            "type": "layers",
            "diff_ids": [f"sha256:{hashlib.sha256(tar.getvalue()).hexdigest()}"],
        },
    }
    image = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }
    index = {"schemaVersion": 2, "manifests": [blob(json.dumps(image).encode(), OCI_MANIFEST)]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    digest_file = scratch / "digest"
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            "--digestfile",
            str(digest_file),
            f"oci:{layout}",
            f"docker://{destination}",
        ]
    )
    repository = destination.rsplit(":", 1)[0]
    return f"{repository}@{digest_file.read_text().strip()}"
