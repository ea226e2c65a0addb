"""The bundle layer against real bentoml: build, digest, export/extract, import, serve."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import httpx
import pytest
from ruamel.yaml import YAML

from releasectl.bundles.archive import export, extract
from releasectl.bundles.bento import BundleError, import_artifact, run_bentoml, run_step
from releasectl.bundles.bento import build as build_bento
from releasectl.bundles.build import fetch_bundle
from releasectl.bundles.digest import content_digest
from releasectl.bundles.store import ArtifactStore
from releasectl.errors import BadInput, Refused
from testing.bentos import (
    IRIS_SRC,
    SETOSA,
    VIRGINICA,
    build_iris,
    copy_iris_sources,
    serving,
    snapshot,
)

pytestmark = pytest.mark.slow

VERSION = "1.2.0-rc.1"
LABELS = {"commit": "0123456789abcdef", "tag": f"release/iris/v{VERSION}", "model": "iris"}


class Built(NamedTuple):
    src: Path
    src_before: dict[str, bytes]
    home: Path
    digest: str
    archive: Path
    extracted: Path


def _load_yaml(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], YAML(typ="safe").load(path))


def _model_archive(model_dir: Path, dest: Path) -> Path:
    """A `bentoml models export` archive (tar.xz, files at the root) of a model folder."""
    with tarfile.open(dest, "w:xz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=f"./{path.name}")
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """One build, exported and extracted; the BentoML home is deleted afterwards."""
    root = tmp_path_factory.mktemp("built")
    src = copy_iris_sources(root / "src")
    before = snapshot(src)
    home = root / "bentoml-home"
    bento = build_iris(src, home, VERSION, LABELS)
    digest = content_digest(bento.path)
    archive = export(bento, root / "archives", home)
    _model_archive(home / "models" / "iris_clf" / "v1", root / "iris_clf.bentomodel")
    extracted = extract(archive, root / "extracted")
    shutil.rmtree(home)
    return Built(src, before, home, digest, archive, extracted)


def test_digest_is_stable_across_rebuilds_with_the_store_deleted(built: Built) -> None:
    assert not built.home.exists()
    first = build_iris(built.src, built.home, VERSION, LABELS)
    assert content_digest(first.path) == built.digest
    # Building an existing tag again replaces it (bentoml alone would refuse).
    second = build_iris(built.src, built.home, VERSION, LABELS)
    assert content_digest(second.path) == built.digest
    assert snapshot(built.src) == built.src_before, "the build wrote into its sources"
    shutil.rmtree(built.home)


def test_exported_archive_is_tar_xz_and_extracts_to_the_same_digest(built: Built) -> None:
    assert built.archive.is_absolute() and built.archive.name == f"iris-{VERSION}.bento"
    assert built.archive.read_bytes()[:6] == b"\xfd7zXZ\x00"
    assert (built.extracted / "models" / "iris_clf" / "v1" / "saved_model.pkl").is_file()
    assert content_digest(built.extracted) == built.digest


def test_labels_and_version_are_in_bento_yaml(built: Built) -> None:
    info = _load_yaml(built.extracted / "bento.yaml")
    assert info["version"] == VERSION
    assert info["labels"] == LABELS


def _tampered_digest(built: Built, tmp_path: Path, change: Callable[[Path], object]) -> str:
    copy = tmp_path / "copy"
    shutil.copytree(built.extracted, copy)
    change(copy)
    return content_digest(copy)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "relative",
    ["src/service.py", "models/iris_clf/v1/saved_model.pkl", "env/python/requirements.txt"],
)
def test_one_changed_byte_changes_the_digest(built: Built, tmp_path: Path, relative: str) -> None:
    digest = _tampered_digest(built, tmp_path, lambda copy: _flip_last_byte(copy / relative))
    assert digest != built.digest


def test_an_added_file_or_an_executable_bit_changes_the_digest(
    built: Built, tmp_path: Path
) -> None:
    added = _tampered_digest(built, tmp_path / "a", lambda c: (c / "src/x.py").write_text(""))
    chmod = _tampered_digest(built, tmp_path / "b", lambda c: (c / "src/service.py").chmod(0o755))
    assert built.digest not in (added, chmod)


def test_volatile_fields_do_not_change_the_digest(built: Built, tmp_path: Path) -> None:
    def retime(copy: Path) -> None:
        for name in ("bento.yaml", "models/iris_clf/v1/model.yaml"):
            path = copy / name
            text = path.read_text()
            assert "creation_time: '" in text
            path.write_text(text.replace("creation_time: '20", "creation_time: '19"))

    assert _tampered_digest(built, tmp_path, retime) == built.digest


def test_the_extracted_bento_serves_its_version(built: Built, tmp_path: Path) -> None:
    with serving(built.extracted, tmp_path / "slot") as url:
        setosa = httpx.post(f"{url}/predict", json={"features": SETOSA}, timeout=10).json()
        virginica = httpx.post(f"{url}/predict", json={"features": VIRGINICA}, timeout=10).json()
        assert (setosa["class"], setosa["label"], setosa["version"]) == (0, "setosa", VERSION)
        assert (virginica["class"], virginica["label"]) == (2, "virginica")
        feedback = httpx.post(
            f"{url}/feedback",
            json={"items": [{"id": setosa["id"], "label": 0}, {"id": virginica["id"], "label": 1}]},
            timeout=10,
        ).json()
        assert (feedback["accepted"], feedback["rolling_accuracy"]) == (2, 0.5)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert f'iris_rolling_accuracy{{service_version="{VERSION}"}} 0.5' in metrics
        # The samples behind the gauge, for `samples:` (README: Analysis).
        assert f'iris_feedback_total{{service_version="{VERSION}"}} 2.0' in metrics


def test_faults_travel_with_the_bundle(tmp_path: Path) -> None:
    src = copy_iris_sources(tmp_path / "src", faults={"error_ratio": 0.5, "degrade": True})
    home = tmp_path / "bentoml-home"
    bento = build_iris(src, home, "2.0.0")
    assert (bento.path / "src" / "faults.yaml").is_file()
    extracted = extract(export(bento, tmp_path, home), tmp_path / "extracted")
    with serving(extracted, tmp_path / "slot") as url:
        answers = [
            httpx.post(f"{url}/predict", json={"features": SETOSA}, timeout=10) for _ in range(10)
        ]
    codes = [answer.status_code for answer in answers]
    assert codes.count(500) == 5 and codes.count(200) == 5
    served = [answer.json() for answer in answers if answer.status_code == 200]
    assert {(p["version"], p["class"]) for p in served} == {("2.0.0", 1)}  # degraded: not setosa


def test_crash_ratio_is_validated_like_the_other_faults(tmp_path: Path) -> None:
    """The fault that kills the worker (docs/ARCHITECTURE.md, "Measured by the endpoint"):
    a ratio between 0 and 1, every Nth predict call; anything else refuses to load."""
    spec = importlib.util.spec_from_file_location("iris_service", IRIS_SRC / "service.py")
    assert spec is not None and spec.loader is not None
    service = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(service)
    faults = tmp_path / "faults.yaml"
    faults.write_text("crash_ratio: 0.2\n")
    ratio = service.load_faults(faults).crash_ratio
    pick = service.EveryNth(ratio)
    assert [pick() for _ in range(10)] == [False] * 4 + [True] + [False] * 4 + [True]
    for bad in ("crash_ratio: 1.5\n", "crash_ratio: -0.1\n", "crash_ration: 0.2\n"):
        faults.write_text(bad)
        with pytest.raises(ValueError, match=r"crash_ratio|unknown keys"):
            service.load_faults(faults)


def test_imported_weights_build_the_same_bundle(built: Built, tmp_path: Path) -> None:
    model_archive = built.archive.parent.parent / "iris_clf.bentomodel"
    sha = hashlib.sha256(model_archive.read_bytes()).hexdigest()
    home = tmp_path / "bentoml-home"
    assert import_artifact(model_archive.as_uri(), sha, home) == "iris_clf:v1"
    bento = build_bento(built.src, name="iris", version=VERSION, labels=LABELS, bentoml_home=home)
    assert content_digest(bento.path) == built.digest


def test_the_batched_build_makes_the_bundle_bentoml_build_makes(
    built: Built, tmp_path: Path
) -> None:
    """Releases pinned when each step was its own `bentoml` command (before the build
    ran in one process) rebuild to their pins: the same weights and sources give the
    same digest through the `bentoml build` command line."""
    model_archive = built.archive.parent.parent / "iris_clf.bentomodel"
    home = tmp_path / "bentoml-home"
    run_bentoml(["models", "import", str(model_archive)], bentoml_home=home)
    labels = [arg for key, value in LABELS.items() for arg in ("--label", f"{key}={value}")]
    argv = ["build", "--name", "iris", "--version", VERSION, *labels, str(built.src)]
    run_bentoml(argv, bentoml_home=home, cwd=built.src)
    assert content_digest(home / "bentos" / "iris" / VERSION) == built.digest


def test_import_refuses_a_model_archive_with_another_digest(built: Built, tmp_path: Path) -> None:
    model_archive = built.archive.parent.parent / "iris_clf.bentomodel"
    home = tmp_path / "bentoml-home"
    with pytest.raises(Refused, match="expected"):
        import_artifact(str(model_archive), "sha256:" + "0" * 64, home)
    assert not (home / "models").exists()


def test_bentofile_pins_the_installed_packages() -> None:
    bentofile = _load_yaml(IRIS_SRC / "bentofile.yaml")
    assert bentofile["python"]["lock_packages"] is False
    assert all(pattern.startswith("/") for pattern in bentofile["include"])
    for pin in bentofile["python"]["packages"]:
        name, _, version = pin.partition("==")
        assert importlib.metadata.version(name) == version, f"{pin} is not what .venv has"


def test_a_failing_preparation_shows_its_output(tmp_path: Path) -> None:
    argv = ["python", "-c", "import sys; print('no training data'); sys.exit(3)"]
    with pytest.raises(BundleError, match="no training data") as caught:
        run_step(tmp_path, argv, tmp_path / "home")
    assert caught.value.code == 1


@pytest.mark.parametrize("version", ["1.2.0+build.5", "V1", "-1", "1.2.0-"])
def test_build_refuses_versions_bentoml_cannot_tag(tmp_path: Path, version: str) -> None:
    with pytest.raises(BadInput):
        build_bento(tmp_path, name="iris", version=version, labels={}, bentoml_home=tmp_path)


def test_build_refuses_a_home_inside_the_build_context(built: Built) -> None:
    with pytest.raises(BadInput, match="inside the build context"):
        build_bento(
            built.src, name="iris", version=VERSION, labels={}, bentoml_home=built.src / "h"
        )


def _archive_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    archive = tmp_path / "evil.bento"
    with tarfile.open(archive, "w:xz") as tar:
        info = tarfile.TarInfo("./bento.yaml")
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return archive


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../escape.txt", tarfile.REGTYPE),
        ("/abs.txt", tarfile.REGTYPE),
        ("./src/link", tarfile.SYMTYPE),
        ("./src/hard", tarfile.LNKTYPE),
    ],
)
def test_extract_refuses_unsafe_members(tmp_path: Path, name: str, kind: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "../../etc/passwd" if kind != tarfile.REGTYPE else ""
    archive = _archive_with(tmp_path, member, b"x" if kind == tarfile.REGTYPE else b"")
    with pytest.raises(Refused):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "escape.txt").exists()


def test_every_flipped_byte_of_a_stored_archive_is_refused(built: Built, tmp_path: Path) -> None:
    """tarfile ends an archive quietly at the first unreadable header after
    the first member; a deploy once saw a damaged archive as a bento without
    its models. Whatever byte is flipped, the fetch is refused, never served."""
    store = ArtifactStore(str(tmp_path / "store"))
    key = store.bundle_key(built.digest)
    data = built.archive.read_bytes()
    offsets = sorted({len(data) // 2, *range(0, len(data), max(1, len(data) // 97))})
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        local = tmp_path / "damaged.bento"
        local.write_bytes(bytes(damaged))
        store.delete(key)
        store.put(local, key, built.digest, {}, {})
        dest = tmp_path / f"fetch-{offset}"
        with pytest.raises(Refused, match=r"damaged|digest"):
            fetch_bundle(store, key, dest, built.digest)
        assert not (dest / "bento").exists(), f"byte {offset}: a damaged bento was left"
    store.delete(key)
    store.put(built.archive, key, built.digest, {}, {})
    folder, digest = fetch_bundle(store, key, tmp_path / "intact", built.digest)
    assert digest == built.digest and (folder / "models").is_dir()


def test_a_stored_archive_without_its_models_is_refused_as_damaged(
    built: Built, tmp_path: Path
) -> None:
    """What a damaged stream that tarfile ends early looks like: a readable
    archive whose bento lists models it does not carry. Refused, not a crash."""
    partial = tmp_path / "partial.bento"
    with tarfile.open(built.archive, "r:xz") as source, tarfile.open(partial, "w:xz") as out:
        for member in source.getmembers():
            if member.name.removeprefix("./").split("/")[0] != "models":
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    store = ArtifactStore(str(tmp_path / "store"))
    key = store.bundle_key(built.digest)
    store.put(partial, key, built.digest, {}, {})
    with pytest.raises(Refused, match=r"is damaged: model iris_clf:v1 .* not found"):
        fetch_bundle(store, key, tmp_path / "fetch", built.digest)
    assert not (tmp_path / "fetch" / "bento").exists()
