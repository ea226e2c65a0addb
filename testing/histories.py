"""The registry histories the tests need, built with the real commands on a scratch Repo.

A history made of several releases costs seconds of git and signing, and many
tests start from the same one on the same fresh registry. So each builder below
marked `@replayed` runs once per process for a given starting state (refs,
HEAD, configuration, signing key, a clean working tree, no remote): the
repository it left is kept, and a later call on an equal start gets a copy of
it (the paths in its git configuration pointed at the caller's repository and
key), the state the same commands would have left there."""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar, cast

from releasectl import trailers
from testing.repos import Repo

P = ParamSpec("P")
R = TypeVar("R")

# (builder, arguments, starting state) -> the repository it left, and what it returned
_BUILT: dict[tuple[str, str, str], tuple[Repo, object]] = {}


# The environment releasectl and git read (a store, a home, git's own settings).
_READ_SETTINGS = ("RELEASECTL_", "GIT_", "AWS_", "FSSPEC_", "BENTOML_")


def _start(repo: Repo) -> str | None:
    """The starting state a history depends on, paths made relative; None when
    it cannot be replayed (a remote, or a working tree that is not clean)."""
    public_key = Path(f"{repo.key}.pub")
    refs, status, head = repo.snapshot()
    if status or repo.git("remote") or not public_key.is_file():
        return None
    config = repo.git("config", "--local", "--list")
    config = config.replace(str(repo.path), "<repo>").replace(str(repo.key), "<key>")
    # What the builders' commands read from the environment is part of the start too.
    settings = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(_READ_SETTINGS))
    state = "\0".join((refs, head, config, repo.email, public_key.read_text(), *settings))
    return hashlib.sha256(state.encode()).hexdigest()


def _copy(src: Repo, path: Path, key: Path) -> Repo:
    """`src`'s repository at `path`, signing with `key` (the same key's copy)."""
    shutil.copytree(src.path, path, symlinks=True)
    config = path / ".git" / "config"
    text = config.read_text().replace(str(src.path), str(path)).replace(str(src.key), str(key))
    config.write_text(text)
    return Repo(path, key, src.email)


def _scratch_root() -> Path:
    """Where built histories are kept: under the session's own HOME (conftest)."""
    root = Path(os.environ["HOME"]) / "histories"
    root.mkdir(exist_ok=True)
    return root


def replayed(build: Callable[P, R]) -> Callable[P, R]:
    """`build(repo, ...)` once per process and starting state; then a copy of
    the repository it left (see the module's docstring)."""

    @functools.wraps(build)
    def replay(*args: P.args, **kwargs: P.kwargs) -> R:
        repo = args[0]
        assert isinstance(repo, Repo)
        start = _start(repo) if "PYTEST_CURRENT_TEST" in os.environ else None
        if start is None:
            return build(*args, **kwargs)
        key = (build.__name__, repr((args[1:], sorted(kwargs.items()))), start)
        if key not in _BUILT:
            root = Path(tempfile.mkdtemp(dir=_scratch_root()))
            (root / "keys").mkdir()
            signing = root / "keys" / "key"
            shutil.copy2(repo.key, signing)
            shutil.copy2(f"{repo.key}.pub", f"{signing}.pub")
            scratch = _copy(repo, root / "repo", signing)
            _BUILT[key] = (scratch, build(scratch, *args[1:], **kwargs))  # type: ignore[arg-type]
        built, returned = _BUILT[key]
        shutil.rmtree(repo.path)
        _copy(built, repo.path, repo.key)
        return cast(R, repo if returned is built else copy.deepcopy(returned))

    return replay


def release(repo: Repo, model: str, version: str, *, stable: bool = False) -> None:
    repo.ok("release", model, version)
    if stable:
        repo.ok("mark-stable", model, version)


def revert_message(model: str, frm: str, to: str, serial: int, reason: str = "it is bad") -> str:
    """A revert commit's message as one written by hand would be: the subject and
    reason `releasectl revert` writes, then its trailers (`releasectl.trailers`)."""
    head = f'Revert "{model} {frm}": back to stable {to}\n\nReason: {reason}\n\n'
    return head + trailers.block(trailers.revert(model, frm, to, serial))


@replayed
def iris_and_fraud(repo: Repo) -> dict[str, str]:
    """The acceptance history: iris 1.0.0 and 1.1.0 stable, then unrelated
    commits (code, docs, a fraud release), then iris 1.2.0 with changed and
    added files. Returns the HEAD before each step."""
    repo.add_model("iris", {"service.py": "# iris v1\n", "notes.txt": "v1 notes\n"})
    repo.add_model("fraud", {"service.py": "# fraud v1\n"})
    release(repo, "iris", "1.0.0", stable=True)
    repo.write("model-releases/iris/service.py", "# iris v1.1\n")
    repo.commit("iris: better model")
    release(repo, "iris", "1.1.0", stable=True)
    repo.write("toolkit/app.py", "print('code')\n")
    repo.commit("some code")
    repo.write("docs/guide.md", "# guide\n")
    repo.commit("docs")
    release(repo, "fraud", "2.0.0")
    repo.write("model-releases/iris/service.py", "# iris v1.2 (bad)\n")
    repo.write("model-releases/iris/extra/new.txt", "new in 1.2\n")
    repo.git("rm", "-q", "model-releases/iris/notes.txt")
    repo.commit("iris: new features")
    release(repo, "iris", "1.2.0")
    return {"head": repo.head()}


@replayed
def iris_and_bad_fraud(repo: Repo) -> None:
    """The acceptance history (`iris_and_fraud`), plus fraud 2.0.0 stable and a
    changed fraud released as 2.1.0."""
    iris_and_fraud(repo)
    repo.ok("mark-stable", "fraud", "2.0.0")
    repo.write("model-releases/fraud/service.py", "# fraud v2.1\n")
    repo.commit("fraud: new rules")
    release(repo, "fraud", "2.1.0")


@replayed
def iris_released(repo: Repo, stable: str, *more: str) -> Repo:
    """iris added, released as `stable` and marked so, then released again as
    each of `more` (the same content)."""
    repo.add_model("iris")
    release(repo, "iris", stable, stable=True)
    for version in more:
        release(repo, "iris", version)
    return repo


MANIFEST = "model-releases/iris/release.yaml"
ANALYSIS = "analysis:\n  interval: 10s\n  bake: 1m\n  metrics:\n    error_rate: {max: 0.05}\n"


@replayed
def iris_stable(repo: Repo, then: str | None = None) -> Repo:
    """iris with an analysis block, 1.0.0 released and stable; with `then`, a
    changed service released as that version on top."""
    repo.add_model("iris")
    repo.write(MANIFEST, (repo.path / MANIFEST).read_text() + ANALYSIS)
    repo.commit("iris: analysis")
    release(repo, "iris", "1.0.0", stable=True)
    if then is not None:
        repo.write("model-releases/iris/service.py", f"# iris {then}\n")
        repo.commit(f"iris: {then}")
        release(repo, "iris", then)
    return repo


@replayed
def three_releases(repo: Repo) -> None:
    """iris 1.0.0 (stable), 1.1.0 and 1.2.0 (current, not marked)."""
    repo.add_model("iris")
    release(repo, "iris", "1.0.0", stable=True)
    for version in ("1.1.0", "1.2.0"):
        repo.write("model-releases/iris/service.py", f"# iris {version}\n")
        repo.commit(f"iris {version}")
        release(repo, "iris", version)


def stable_pair(
    repo: Repo, version: str, *, sign_key: Path | None, email: str | None = None
) -> None:
    """A release + stable tag pair for `version` on the last iris commit, made
    by hand: unsigned (sign_key None) or signed with another key."""
    target = repo.git("rev-list", "-1", "HEAD", "--", "model-releases/iris")
    env = {}
    config: list[str] = []
    if sign_key is not None:
        config = ["-c", f"user.signingkey={sign_key}"]
    if email:
        env = {"GIT_COMMITTER_EMAIL": email}
    for kind in ("release", "stable"):
        name = f"{kind}/iris/v{version}"
        flag = "-s" if sign_key is not None else "-a"
        repo.git(*config, "tag", flag, "-m", name, name, target, env=env)
