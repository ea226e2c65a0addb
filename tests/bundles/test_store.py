"""The artifact store over a local folder and fsspec's memory filesystem."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from releasectl.bundles.store import ArtifactStore, StoreError
from releasectl.errors import BadInput, Refused

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


@pytest.fixture(params=["folder", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "folder":
        yield ArtifactStore(str(tmp_path / "artifacts"))
        return
    url = f"memory://releasectl-test-{uuid.uuid4().hex}"
    yield ArtifactStore(url)
    memory = fsspec.filesystem("memory")
    if memory.exists(url):
        memory.rm(url, recursive=True)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "local" / "iris-1.2.0.bento"
    path.parent.mkdir()
    path.write_bytes(b"not really xz" * 1000)
    return path


def test_keys_are_content_addressed() -> None:
    assert ArtifactStore.bundle_key(DIGEST) == f"bundles/{'ab' * 32}.bento"
    assert ArtifactStore.bundle_key(OTHER) != ArtifactStore.bundle_key(DIGEST)
    assert ArtifactStore.weights_key("cd" * 32) == f"weights/{'cd' * 32}.bentomodel"
    for bad in ("iris", "sha256:" + "AB" * 32, "sha256:" + "ab" * 31):
        with pytest.raises(BadInput):
            ArtifactStore.bundle_key(bad)


def test_put_get_exists_digest(store: ArtifactStore, archive: Path, tmp_path: Path) -> None:
    key = ArtifactStore.bundle_key(DIGEST)
    assert not store.exists(key)
    assert store.digest(key) is None
    uri = store.put(archive, key, DIGEST)
    assert uri == store.uri(key) and uri.endswith(key)
    assert store.exists(key)
    assert store.digest(key) == DIGEST
    fetched = store.get(key, tmp_path / "fetched")
    assert fetched.read_bytes() == archive.read_bytes()
    into_folder = tmp_path / "folder"
    into_folder.mkdir()
    assert store.get(key, into_folder) == into_folder / f"{'ab' * 32}.bento"


def test_plain_folder_store_returns_a_plain_path(tmp_path: Path, archive: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    uri = store.put(archive, "iris/1.0.0/iris-1.0.0.bento", DIGEST)
    assert Path(uri).read_bytes() == archive.read_bytes()
    same_as_url = ArtifactStore(f"file://{tmp_path}/artifacts")
    assert same_as_url.digest("iris/1.0.0/iris-1.0.0.bento") == DIGEST


def test_write_is_atomic(
    store: ArtifactStore, archive: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "iris/1.0.0/iris-1.0.0.bento"
    final = store._path(key)

    def interrupted_put(local: str, remote: str) -> None:
        assert remote != final, "wrote straight to the final name"
        with store.fs.open(remote, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(store.fs, "put_file", interrupted_put)
    with pytest.raises(StoreError, match="disk full"):
        store.put(archive, key, DIGEST)
    assert not store.exists(key)
    assert not store.fs.exists(final)
    assert store.fs.ls(final.rsplit("/", 1)[0]) == [], "temp file left behind"


def test_same_digest_is_idempotent_other_digest_refused(
    store: ArtifactStore, archive: Path
) -> None:
    key = "iris/1.0.0/iris-1.0.0.bento"
    first = store.put(archive, key, DIGEST)
    assert store.put(archive, key, DIGEST) == first
    with pytest.raises(Refused):
        store.put(archive, key, OTHER)
    assert store.digest(key) == DIGEST


@pytest.mark.parametrize(
    "key", ["../iris.bento", "iris/../../x.bento", "/etc/passwd", "iris//x", "", "a\\b", "iris/.."]
)
def test_bad_keys_are_refused(store: ArtifactStore, archive: Path, key: str) -> None:
    with pytest.raises(BadInput):
        store.put(archive, key, DIGEST)
    with pytest.raises(BadInput):
        store.exists(key)


def test_missing_key_and_bad_digest(store: ArtifactStore, archive: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        store.get("iris/9.9.9/iris-9.9.9.bento", tmp_path / "x")
    with pytest.raises(BadInput):
        store.put(archive, "iris/1.0.0/iris-1.0.0.bento", "md5:abc")


def _tiny_bento(tmp_path: Path, text: str) -> tuple[Path, str]:
    """A real `.bento` archive (tar.xz, bento.yaml at its root, a model folder)
    and its content digest, made without bentoml."""
    import tarfile

    from releasectl.bundles.digest import content_digest

    folder = tmp_path / f"bento-{uuid.uuid4().hex}"
    (folder / "models").mkdir(parents=True)
    (folder / "bento.yaml").write_text("name: iris\nversion: 1.0.0\nmodels: []\n")
    (folder / "src").mkdir()
    (folder / "src" / "service.py").write_text(text)
    archive = tmp_path / f"{folder.name}.bento"
    with tarfile.open(archive, "w:xz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return archive, content_digest(folder)


def test_put_replaces_garbage_planted_under_a_digest(tmp_path: Path) -> None:
    """Anyone who can write to the store can plant an archive and a sidecar
    claiming a digest; the next put of that content must not keep them."""
    from releasectl.bundles.build import fetch_bundle

    store = ArtifactStore(str(tmp_path / "artifacts"))
    genuine, digest = _tiny_bento(tmp_path, "# genuine\n")
    planted, _ = _tiny_bento(tmp_path, "# planted\n")
    key = store.bundle_key(digest)
    store.put(planted, key, digest)  # the planted archive under the genuine digest
    with pytest.raises(Refused):
        fetch_bundle(store, key, tmp_path / "before", digest)
    store.put(genuine, key, digest)
    folder, found = fetch_bundle(store, key, tmp_path / "after", digest)
    assert found == digest and (folder / "src/service.py").read_text() == "# genuine\n"
    # a second put of the genuine content keeps it (and says where it is)
    assert store.put(genuine, key, digest) == store.uri(key)


def test_put_replaces_a_sidecar_that_names_another_digest_under_a_content_key(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    genuine, digest = _tiny_bento(tmp_path, "# genuine\n")
    key = store.bundle_key(digest)
    store.put(genuine, key, digest)
    store.fs.pipe_file(store._path(key) + ".json", b'{"digest": "' + OTHER.encode() + b'"}')
    store.put(genuine, key, digest)
    assert store.digest(key) == digest
