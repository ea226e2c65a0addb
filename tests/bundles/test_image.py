"""The image of a release for the kubernetes target, for real: the iris release's
bundle built with buildah on a Python base made from Debian's packages, pushed
to Debian's docker-registry on 127.0.0.1, pinned by the registry's digest, and
run with podman. ONE build for the module (it is the slowest step); each outcome
is its own test, so a part that cannot run here fails alone and says why."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from releasectl.bundles import image
from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.loopback import free_port
from releasectl.manifest.edits import edit
from releasectl.manifest.schema import Manifest, load
from testing.bentos import SETOSA, iris_registry
from testing.images import (
    docker_registry,
    manifest,
    podman_serving,
    push_base,
    remove_storage,
    runroot,
    storage_args,
    storage_driver,
)
from testing.processes import env_home
from testing.repos import Repo

pytestmark = pytest.mark.slow
MANIFEST = "model-releases/iris/release.yaml"


@dataclass
class Built:
    repo: Repo
    registry: str  # host:port
    repository: str
    bundle_digest: str
    archive: Path
    image_ref: str  # bundle.image as the signed release commit pins it
    port: int  # deploy.port: the port the image's server listens on
    release_stderr: str  # the release's progress lines
    storage: Path
    driver: str  # the test's storage driver (testing.images.storage_driver)
    root: Path


def _pinned(repo: Repo, version: str) -> Manifest:
    text = repo.git("show", f"release/iris/v{version}:{MANIFEST}")
    return load(text, MANIFEST)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """iris released for the kubernetes target by `releasectl release` itself: the
    release builds the image on a base in the 127.0.0.1 registry, pushes it and pins
    the registry's digest in its signed commit."""
    root = tmp_path_factory.mktemp("image")
    storage = root / "storage"
    driver = storage_driver(root / "probe")
    repo = iris_registry(root / "registry", free_port())
    try:
        with docker_registry(root / "oci-registry") as host:
            base = f"{host}/base/debian-python:bookworm"
            push_base(storage, driver, base)
            repository = f"{host}/releasectl/iris"
            path = repo.path / MANIFEST
            block = {"image": repository, "namespace": "ml", "base_image": base}
            # A kubernetes model is judged through the cluster's Prometheus.
            source = {"kind": "prometheus", "url": "http://prometheus.monitoring.svc:9090"}
            changes = {
                "deploy": {"target": "kubernetes", "kubernetes": block},
                "analysis": {"source": source},
            }
            path.write_text(edit(path.read_text(), "release.yaml", changes))
            repo.commit("iris: served by the cluster")
            # buildah (releasectl's builder) reads the test's storage from a storage.conf,
            # as an operator's machine would configure it.
            conf = root / "storage.conf"
            conf.write_text(
                f'[storage]\ndriver = "{driver}"\ngraphroot = "{storage / "root"}"\n'
                f'runroot = "{runroot(storage)}"\n'
            )
            proc = repo.cli("release", "iris", "1.0.0", env={"CONTAINERS_STORAGE_CONF": str(conf)})
            assert proc.returncode == 0, proc.stderr
            pinned = _pinned(repo, "1.0.0")
            digest, ref = pinned.bundle.digest, pinned.bundle.image
            assert digest is not None and ref is not None
            bundles = env_home() / "artifacts" / "bundles"
            archive = bundles / f"{digest.removeprefix('sha256:')}.bento"
            yield Built(
                repo,
                host,
                repository,
                digest,
                archive,
                ref,
                pinned.deploy.port,
                proc.stderr,
                storage,
                driver,
                root,
            )
    finally:
        remove_storage(storage, driver)


def test_the_pin_is_the_digest_the_registry_serves(built: Built) -> None:
    repository, digest = image.split_pinned(built.image_ref)
    assert repository == built.repository
    by_tag = manifest(built.repository, "v1.0.0")
    # The registry's own digest (header) and the hash of the bytes it serves.
    assert by_tag.headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(by_tag.content).hexdigest() == digest
    assert manifest(built.repository, digest).content == by_tag.content
    # The release said what it was doing while it built and pushed.
    assert "building the image of iris 1.0.0 on" in built.release_stderr  # names the model
    assert "pushing the image" in built.release_stderr


def test_the_release_commit_pins_the_image_beside_the_bundle_and_renders_it(built: Built) -> None:
    head = built.repo.git("rev-parse", "release/iris/v1.0.0^{commit}")
    changed = built.repo.git("show", "--name-only", "--format=", head).splitlines()
    folder = "deploy/production/iris"
    assert MANIFEST in changed and f"{folder}/kustomization.yaml" in changed
    kustomization = built.repo.git("show", f"{head}:{folder}/kustomization.yaml")
    repository, digest = image.split_pinned(built.image_ref)
    assert f"newName: {repository}" in kustomization and f"digest: {digest}" in kustomization
    # Signed, by a trusted key, as every release is; and CI's check of the pinned image
    # in its registry (release.yml: verify --image) accepts it.
    verified = built.repo.ok("verify", "iris", "1.0.0", "--image")
    assert f"ok    image: {built.image_ref} carries bundle {built.bundle_digest}" in verified
    assert verified.rstrip().endswith("iris 1.0.0: verified")


def test_the_image_carries_the_bundle_digest_and_the_serving_config(built: Built) -> None:
    doc = manifest(built.repository, image.split_pinned(built.image_ref)[1]).json()
    host, _, name = built.repository.partition("/")
    blob = httpx.get(f"http://{host}/v2/{name}/blobs/{doc['config']['digest']}", timeout=30)
    config = blob.json()["config"]
    assert config["Labels"][image.BUNDLE_LABEL] == built.bundle_digest
    assert f"{built.port}/tcp" in config["ExposedPorts"]
    assert f"BENTOML_PORT={built.port}" in config["Env"]
    assert config["User"] == image.USER
    assert blob.json()["created"].startswith("1970-01-01")  # --timestamp 0


def test_verify_pushed_accepts_the_pin_and_refuses_another_bundle(built: Built) -> None:
    image.verify_pushed(built.image_ref, built.bundle_digest, registry_tls_verify=False)
    other = "sha256:" + "0" * 64
    with pytest.raises(Refused, match=r"carries releasectl\.bundle\.digest=sha256:"):
        image.verify_pushed(built.image_ref, other, registry_tls_verify=False)
    missing = f"{built.repository}@sha256:{'1' * 64}"
    with pytest.raises(Refused, match="does not hold"):
        image.verify_pushed(missing, built.bundle_digest, registry_tls_verify=False)


def test_the_pinned_image_runs_and_predicts(built: Built) -> None:
    # podman with runc and the host's network (see testing.images.PODMAN_RUN for why).
    with podman_serving(
        built.storage, built.driver, built.image_ref, built.root / "podman.log"
    ) as url:
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        answer = httpx.post(f"{url}/predict", json={"features": SETOSA}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["label"] == "setosa"
        assert body["version"] == "1.0.0"


def test_a_bento_that_is_not_the_release_s_is_refused_before_building(built: Built) -> None:
    before = _images(built)
    with pytest.raises(Refused, match="has digest"):
        image.build_and_push(
            built.archive,
            repository=built.repository,
            base_image="127.0.0.1:1/never/pulled:x",
            bundle_digest="sha256:" + "2" * 64,
            storage=built.storage,
            storage_driver=built.driver,
        )
    assert _images(built) == before


def _images(built: Built) -> str:
    argv = ["buildah", *storage_args(built.storage, built.driver), "images", "--quiet", "--all"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


# --- bad input: no build, one line --------------------------------------------


@pytest.mark.parametrize(
    "repository", ["ghcr.io/org/iris:1.0", "ghcr.io/org/iris@sha256:" + "a" * 64, "Org/Iris", ""]
)
def test_a_repository_with_a_tag_or_digest_is_bad_input(repository: str, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="without tag or digest") as caught:
        image.build_and_push(
            tmp_path, repository=repository, base_image="b", bundle_digest="sha256:" + "0" * 64
        )
    assert "\n" not in caught.value.line()


def test_an_image_reference_without_a_digest_is_bad_input() -> None:
    for ref in ("ghcr.io/org/iris:1.0", "ghcr.io/org/iris", "ghcr.io/org/iris@sha256:abc"):
        with pytest.raises(BadInput, match="not pinned by digest"):
            image.verify_pushed(ref, "sha256:" + "0" * 64)


def test_an_unreachable_registry_is_an_operational_failure_in_one_line() -> None:
    ref = f"127.0.0.1:{free_port()}/releasectl/iris@sha256:{'3' * 64}"
    with pytest.raises(OperationFailed) as caught:
        image.verify_pushed(ref, "sha256:" + "0" * 64, registry_tls_verify=False)
    assert caught.value.code == 1
    assert "cannot ask the registry" in caught.value.message
    assert "\n" not in caught.value.line()


def test_an_unreachable_registry_stops_the_release_before_the_build(built: Built) -> None:
    before = _images(built)
    with pytest.raises(OperationFailed, match="cannot ask the registry") as caught:
        image.build_and_push(
            built.archive,
            repository=f"127.0.0.1:{free_port()}/releasectl/iris",
            base_image=f"{built.registry}/base/debian-python:bookworm",
            bundle_digest=built.bundle_digest,
            registry_tls_verify=False,
            storage=built.storage,
            storage_driver=built.driver,
        )
    assert caught.value.code == 1
    assert "\n" not in caught.value.line()
    assert _images(built) == before


def test_without_a_builder_the_error_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a real PATH with no buildah or podman on it
    with pytest.raises(OperationFailed) as caught:
        image.find_builder()
    assert "apt-get install buildah" in caught.value.line()
