"""The OCI image of a release's bento, built, pushed and pinned by the registry's
digest (docs/ARCHITECTURE.md, "Images").

The one module that runs an image builder (buildah, else podman) and skopeo.
Every tool runs from a list argv, never through a shell. The image is built from
our own small Containerfile rather than `bentoml containerize`: bentoml's
generated one runs `apt-get update` and installs uv from PyPI whatever the base,
and freezes the base image into the bento at `bentoml build` time, so neither an
offline build nor the base image as a deploy setting is possible with it.

What the image holds: the bento as released (its content digest is checked
against the pin before anything is built), a virtual environment made from the
bento's own pins (as the local target serves it), and `bentoml serve` as its
entrypoint, on `BENTOML_PORT` (the deploy port) as an unprivileged user. The
bundle digest rides along as the label `releasectl.bundle.digest`, so CI can
tie a pushed image to a release without rebuilding it: an image digest is not
reproducible across machines, so the releaser's push is the pin.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from releasectl.bundles.archive import extract
from releasectl.bundles.bento import DIGEST_PREFIX
from releasectl.bundles.digest import content_digest
from releasectl.bundles.pins import pins_of
from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.git import Git, read_blob
from releasectl.manifest.kubernetes import PINNED_IMAGE_RE, REPOSITORY_RE
from releasectl.manifest.schema import load
from releasectl.names import manifest_path
from releasectl.progress import Progress, step
from releasectl.verdict import Verdict

BUNDLE_LABEL = "releasectl.bundle.digest"
BENTO_PATH = "/home/bentoml/bento"
VENV = "/app/.venv"
USER = "1034:1034"  # bentoml's own images' uid/gid; numeric, so the base needs no useradd
_WHEELS = "/wheels"  # where a local wheel folder is mounted while the environment is made
_BUILD_TIMEOUT_S = 1800
_PUSH_TIMEOUT_S = 900
_ASK_TIMEOUT_S = 120
# The reference grammar lives with the manifest's image fields (one home).
_REPOSITORY = REPOSITORY_RE
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PINNED = PINNED_IMAGE_RE
_BUILD_HINT = (
    "the base image must be pullable and have python3 with venv (deploy.kubernetes.base_image), "
    "and the bento's pins installable from the package source: UV_FIND_LINKS with "
    "UV_NO_INDEX=1 for a local wheel folder, or UV_INDEX_URL"
)
_SKOPEO_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
_NOT_THERE = ("manifest unknown", "not found", "name unknown", "no such image")


@dataclass(frozen=True)
class Builder:
    """An image builder on PATH and the storage options every call repeats."""

    name: str  # "buildah" or "podman": both take the same build and push flags
    path: str
    storage: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageSource:
    """Where the image's environment gets the bento's pinned packages: a local
    wheel folder (mounted read-only, no index, no network), or an index URL, or
    pip's default."""

    wheelhouse: Path | None = None
    index_url: str | None = None


def package_source_from_env() -> PackageSource:
    """The source the local target's environments use (docs/ARCHITECTURE.md,
    "Deploy targets"): UV_FIND_LINKS when it is a folder and UV_NO_INDEX is set,
    else UV_INDEX_URL or PIP_INDEX_URL."""
    links = os.environ.get("UV_FIND_LINKS", "")
    no_index = os.environ.get("UV_NO_INDEX", "").lower() in ("1", "true", "yes")
    if links and no_index and Path(links).is_dir():
        return PackageSource(wheelhouse=Path(links))
    index = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL")
    return PackageSource(index_url=index or None)


def find_builder(storage: Path | None = None, storage_driver: str | None = None) -> Builder:
    """buildah, else podman. `storage` keeps images in a folder of their own
    (root/ and run/ inside it) instead of the machine's container storage."""
    options: list[str] = []
    if storage is not None:
        options += ["--root", str(storage / "root"), "--runroot", str(storage / "run")]
    if storage_driver:
        # Explicit: buildah 1.28 ignores STORAGE_DRIVER in the environment.
        options += ["--storage-driver", storage_driver]
    for name in ("buildah", "podman"):
        path = shutil.which(name)
        if path is not None:
            return Builder(name, path, tuple(options))
    raise OperationFailed(
        "no image builder found: releasectl builds images with buildah or podman",
        "install Debian's buildah package (apt-get install buildah)",
    )


def is_loopback(repository: str) -> bool:
    """A registry on this machine (localhost, 127.0.0.1, [::1]): spoken to over plain
    HTTP, as Docker and podman do by default for a loopback registry."""
    host = repository.split("/", 1)[0].lower()
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return host in ("localhost", "127.0.0.1", "[::1]")


def check_repository(repository: str) -> str:
    """An image repository without tag or digest (releasectl adds the digest)."""
    if "@" in repository or not _REPOSITORY.match(repository):
        raise BadInput(
            f"image repository {repository!r} is not a repository name without tag or digest",
            "write it like ghcr.io/org/iris: releasectl pins the digest itself",
        )
    return repository


def split_pinned(image_ref: str) -> tuple[str, str]:
    """`repository@sha256:<hex>` into its repository and digest."""
    match = _PINNED.match(image_ref)
    if match is None or not _REPOSITORY.match(match["repository"]):
        raise BadInput(
            f"image reference {image_ref!r} is not pinned by digest",
            "write it as <repository>@sha256:<64 hex digits>",
        )
    return match["repository"], match["digest"]


# --- running the tools ----------------------------------------------------------


def _last_line(output: str) -> str:
    """The tool's error in one line: pip's own (`ERROR: ...`) when a build step
    ran pip, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    pip = [line for line in lines if line.startswith("ERROR: ")]
    return (pip or lines or ["no message"])[-1]


def _run(argv: Sequence[str], *, timeout: float, what: str, hint: str | None = None) -> str:
    """Run argv; its stdout, or OperationFailed naming `what` with the tool's last line."""
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationFailed(f"{what}: {exc}", hint) from None
    if proc.returncode != 0:
        raise OperationFailed(f"{what}: {_last_line(proc.stderr or proc.stdout)}", hint)
    return proc.stdout


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        raise OperationFailed(
            "skopeo is needed to ask a registry about an image",
            "install Debian's skopeo package (apt-get install skopeo)",
        )
    return path


def _ask_registry(args: Sequence[str], image: str, tls_verify: bool) -> bytes:
    """`skopeo inspect ARGS docker://IMAGE`: the registry's answer, as bytes.
    An image the registry does not hold is Refused (exit 3); a registry that
    cannot be asked is an operational failure (exit 1)."""
    argv = [_skopeo(), "inspect", *args, f"--tls-verify={str(tls_verify).lower()}"]
    try:
        proc = subprocess.run(
            [*argv, f"docker://{image}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_ASK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationFailed(f"cannot ask the registry about {image}: {exc}") from None
    if proc.returncode != 0:
        line = _last_line(proc.stderr.decode(errors="replace"))
        # skopeo logs `time="…" level=fatal msg="…"`: the message alone, the same every time.
        logged = _SKOPEO_MSG.search(line)
        if logged is not None:
            line = logged.group(1).replace('\\"', '"')
        if any(marker in line.lower() for marker in _NOT_THERE):
            raise Refused(f"the registry does not hold {image}: {line}")
        raise OperationFailed(
            f"cannot ask the registry about {image}: {line}",
            "check that the registry is reachable and that you are logged in (skopeo login)",
        )
    return proc.stdout


def _require_reachable(image: str, tls_verify: bool) -> None:
    """The registry answers about image (that it does not hold it yet is fine)."""
    with contextlib.suppress(Refused):
        _ask_registry(["--raw"], image, tls_verify)


def preflight(repository: str, tag: str, *, registry_tls_verify: bool = True) -> None:
    """The refusals of `build_and_push` that cost milliseconds, before the
    release trains and builds for minutes (and in its dry run): a builder on
    PATH, and a registry that answers about the image."""
    check_repository(repository)
    find_builder()
    _require_reachable(f"{repository}:{tag}", registry_tls_verify)


# --- the image -----------------------------------------------------------------


def containerfile(
    base_image: str,
    requirements: str,
    workdir: str,
    extra: Sequence[str],
    *,
    port: int,
    source: PackageSource,
) -> str:
    """The Containerfile of a bento's image; paths are relative to the bento."""
    install = [f"{VENV}/bin/pip", "install", "--quiet", "--no-cache-dir"]
    install.append("--disable-pip-version-check")
    if source.wheelhouse is not None:
        install += ["--no-index", "--find-links", _WHEELS]
    elif source.index_url:
        install += ["--index-url", source.index_url]
    install += ["-r", f"{BENTO_PATH}/{requirements}", *extra]
    env = {
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "HOME": "/home/bentoml",
        "BENTOML_HOME": "/home/bentoml",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_CONTAINERIZED": "true",
        # bentoml serve reads both; a pod (or a test) may override them.
        "BENTOML_HOST": "0.0.0.0",
        "BENTOML_PORT": str(port),
        "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    # One RUN (one pass over the container's files when it is committed), and the
    # bento copied first: its requirements file and local wheels are inside it.
    script = " && ".join(
        [
            shlex.join(["chown", USER, "/home/bentoml"]),
            shlex.join(["python3", "-m", "venv", VENV]),
            shlex.join(install),
        ]
    )
    lines = [
        f"FROM {base_image}",
        *(f"ENV {key}={json.dumps(value)}" for key, value in env.items()),
        f"COPY --chown={USER} . {BENTO_PATH}/",
        f"WORKDIR {BENTO_PATH}/{workdir}",
        f"RUN {json.dumps(['/bin/sh', '-c', script])}",
        f"WORKDIR {BENTO_PATH}",
        f"USER {USER}",
        f"EXPOSE {port}",
        f"ENTRYPOINT {json.dumps([f'{VENV}/bin/python', '-m', 'bentoml', 'serve', BENTO_PATH])}",
        "",
    ]
    return "\n".join(lines)


def _bento_folder(bento_dir_or_archive: Path, scratch: Path) -> Path:
    """A served-as-is bento folder: the given folder, or the archive extracted."""
    if bento_dir_or_archive.is_file():
        return extract(bento_dir_or_archive, scratch / "bento")
    if not (bento_dir_or_archive / "bento.yaml").is_file():
        raise BadInput(
            f"{bento_dir_or_archive} is neither a .bento archive nor a bento folder",
            "give the release's stored archive or its extracted folder",
        )
    return bento_dir_or_archive


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else "."


def build_and_push(
    bento_dir_or_archive: Path,
    *,
    repository: str,
    base_image: str,
    bundle_digest: str,
    tag: str | None = None,
    port: int = 3000,
    registry_tls_verify: bool = True,
    packages: PackageSource | None = None,
    storage: Path | None = None,
    storage_driver: str | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> str:
    """Build the image of a release's bento FROM base_image, push it to
    repository (as `tag`, default `bundle-<first 16 hex of the bundle digest>`)
    and return `repository@sha256:<hex>`, the digest the registry serves.

    The bento must carry bundle_digest (Refused otherwise, before any build);
    the image is labelled with it. registry_tls_verify applies to pulling the
    base and to pushing. `packages` defaults to package_source_from_env().
    `name` is what the progress calls it (the model and version; default the folder).
    """
    check_repository(repository)
    tag = tag or "bundle-" + bundle_digest.removeprefix(DIGEST_PREFIX)[:16]
    if not _TAG.match(tag):
        raise BadInput(f"image tag {tag!r} is not a valid tag", "use letters, digits, . _ -")
    destination = f"{repository}:{tag}"
    source = packages if packages is not None else package_source_from_env()
    tls = f"--tls-verify={str(registry_tls_verify).lower()}"
    with tempfile.TemporaryDirectory(prefix="releasectl-image-") as tmp:
        scratch = Path(tmp)
        folder = _bento_folder(bento_dir_or_archive, scratch)
        found = content_digest(folder)
        if found != bundle_digest:
            raise Refused(
                f"the bento at {bento_dir_or_archive} has digest {found}, not {bundle_digest}",
                "build the image from the release's own bundle",
            )
        # Refusals that cost milliseconds come before a build that costs minutes.
        builder = find_builder(storage, storage_driver)
        _require_reachable(destination, registry_tls_verify)
        pins = pins_of(folder)
        (scratch / "Containerfile").write_text(
            containerfile(
                base_image,
                _relative(pins.requirements, folder),
                _relative(pins.workdir, folder),
                pins.extra,
                port=port,
                source=source,
            )
        )
        build = [builder.path, *builder.storage, "build" if builder.name == "podman" else "bud"]
        build += ["--format", "oci", "--layers=false", "--timestamp", "0", tls]
        isolation = os.environ.get("BUILDAH_ISOLATION") or "chroot"
        build += ["--isolation", isolation, "--label", f"{BUNDLE_LABEL}={bundle_digest}"]
        if source.wheelhouse is not None:
            build += ["--volume", f"{source.wheelhouse.absolute()}:{_WHEELS}:ro"]
            if isolation != "chroot":  # chroot shares the host's network, and cannot drop it
                build += ["--network", "none"]  # everything comes from the mounted folder
        build += ["--iidfile", str(scratch / "iid"), "-f", str(scratch / "Containerfile")]
        build += ["--tag", destination]  # kept locally, as `docker build -t` would
        build.append(str(folder))
        with step(progress, f"building the image of {name or folder.name} on {base_image}"):
            _run(
                build,
                timeout=_BUILD_TIMEOUT_S,
                what=f"cannot build the image on {base_image}",
                hint=_BUILD_HINT,
            )
        image_id = (scratch / "iid").read_text().strip()
        digest_file = scratch / "digest"
        push = [builder.path, *builder.storage, "push", tls, "--digestfile", str(digest_file)]
        with step(progress, f"pushing the image to {destination}"):
            _run(
                [*push, image_id, f"docker://{destination}"],
                timeout=_PUSH_TIMEOUT_S,
                what=f"cannot push the image to {destination}",
                hint=f"check that the registry is reachable and that you may push "
                f"({builder.name} login {repository.split('/')[0]})",
            )
        pushed = digest_file.read_text().strip()
    with step(progress, f"checking {destination} in the registry"):
        # The registry's digest, not ours: a registry that rewrote the manifest would
        # serve another one, and the pin must name what a cluster pulls.
        raw = _ask_registry(["--raw"], destination, registry_tls_verify)
        served = "sha256:" + hashlib.sha256(raw).hexdigest()
        if served != pushed:
            raise OperationFailed(
                f"the registry serves {destination} as {served}, but the push wrote {pushed}"
            )
        image_ref = f"{repository}@{served}"
        verify_pushed(image_ref, bundle_digest, registry_tls_verify=registry_tls_verify)
    return image_ref


def verify_pushed(image_ref: str, bundle_digest: str, *, registry_tls_verify: bool = True) -> None:
    """The registry holds image_ref (`repository@sha256:<hex>`), its manifest
    hashes to that digest, and the image carries bundle_digest as its
    `releasectl.bundle.digest` label. Refused (exit 3) when any of it is not so."""
    repository, digest = split_pinned(image_ref)
    raw = _ask_registry(["--raw"], image_ref, registry_tls_verify)
    if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
        raise Refused(f"the registry's manifest for {image_ref} does not hash to {digest}")
    try:
        config = json.loads(_ask_registry(["--config"], image_ref, registry_tls_verify))
        labels = (config.get("config") or {}).get("Labels") or {}
    except (ValueError, AttributeError):
        raise Refused(f"the registry's image config for {image_ref} is unreadable") from None
    label = labels.get(BUNDLE_LABEL)
    if label != bundle_digest:
        raise Refused(
            f"the image {image_ref} carries {BUNDLE_LABEL}={label or '(none)'}, "
            f"not the release's bundle {bundle_digest}",
            f"rebuild and push the image of {repository} from the release's bundle",
        )


def verify_release_image(git: Git, model: str, commit: str) -> list[Verdict]:
    """The registry's word on the image a release commit pins (none for a model
    without one): it exists by that digest and carries the release's bundle digest.
    A registry that cannot be asked is an operational failure (exit 1), not a verdict."""
    path = manifest_path(model)
    manifest = load(read_blob(git, commit, path) or "", path, model=model)
    ref, digest = manifest.bundle.image, manifest.bundle.digest
    if ref is None or digest is None:
        return []
    try:
        verify_pushed(ref, digest, registry_tls_verify=not is_loopback(ref))
    except Refused as exc:
        return [Verdict.bad(exc.message, subject="image")]
    return [Verdict.good(f"{ref} carries bundle {digest}", subject="image")]
