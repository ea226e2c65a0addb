"""The package as users get it (docs/ARCHITECTURE.md, "Supply chain"): the sdist and wheel
built from a fresh clone (`python -m build`, offline), checked by twine, carrying every
template; the wheel installed (not editable) in a new virtual environment from
the local wheelhouse; and that install running init, new, release and revert
in a scratch registry, its lock pinning the very wheel that was built."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from releasectl import __version__
from releasectl.pipeline.lock import LOCK_FILE, pins
from testing.paths import ROOT
from testing.repos import git, make_key
from testing.wheels import clean_env, new_venv, wheelhouse

pytestmark = pytest.mark.slow


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr[-3000:]}{proc.stdout[-2000:]}"
    return proc.stdout


def test_the_wheel_from_a_fresh_clone_installs_and_runs_the_release_cycle(
    tmp_path: Path,
) -> None:
    env = clean_env()
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-local", str(ROOT), str(clone))
    dist = tmp_path / "dist"
    bin_ = Path(sys.executable).parent
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist)], clone, env)
    wheel = dist / f"releasectl-{__version__}-py3-none-any.whl"
    sdist = dist / f"releasectl-{__version__}.tar.gz"
    assert sorted(dist.iterdir()) == sorted([wheel, sdist])
    _run([str(bin_ / "twine"), "check", "--strict", str(wheel), str(sdist)], clone, env)

    # every template (the workflows, the model the iris example is made from) is package data
    package = clone / "toolkit" / "releasectl"
    wanted = {
        f"releasectl/{p.relative_to(package).as_posix()}"
        for p in (package / "templates").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "releasectl/templates/workflows/deploy.yml" in wanted
    assert "releasectl/templates/model/service.py.tmpl" in wanted
    names = set(zipfile.ZipFile(wheel).namelist())
    assert wanted | {"releasectl/py.typed"} <= names, sorted(wanted - names)

    # a new virtual environment, the wheel (not editable), its dependencies from the wheelhouse
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for found in wheelhouse().glob("*.whl"):
        if not found.name.startswith("releasectl-"):
            (wheels / found.name).symlink_to(found)
    shutil.copy2(wheel, wheels / wheel.name)
    venv = new_venv(tmp_path / "venv")
    started = time.monotonic()
    _run(
        [str(venv / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--find-links", str(wheels), f"releasectl[example]=={__version__}"],
        tmp_path, env,
    )  # fmt: skip
    print(f"wheel install into a fresh venv: {time.monotonic() - started:.1f} s")
    where = json.loads(
        _run(
            [str(venv / "python"), "-c",
             "import json, releasectl, importlib.metadata as m; d = m.distribution('releasectl');"
             "print(json.dumps([releasectl.__file__, d.version, d.read_text('direct_url.json')]))"],
            tmp_path, env,
        )
    )  # fmt: skip
    assert where[0].startswith(str(tmp_path / "venv")) and where[1] == __version__
    assert where[2] is None or "editable" not in where[2]

    # the installed command, in a scratch registry, on a PATH without the dev .venv
    run_env = {**env, "PATH": f"{venv}:/usr/bin:/bin"}
    registry = tmp_path / "registry"
    registry.mkdir()
    key = make_key(tmp_path / "keys", "k")
    git(registry, "init", "-q", "-b", "main")
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key))):
        git(registry, "config", k, v)

    def rc(*args: str) -> str:
        return _run([str(venv / "releasectl"), *args], registry, run_env)

    rc("init", "--no-index", "--find-links", str(wheels))
    lock = (registry / LOCK_FILE).read_text()
    assert pins(lock)["releasectl"] == __version__
    assert f"--hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}" in lock
    assert "ci" in rc("--help")
    rc("new", "iris")
    for name in (package / "templates" / "model").iterdir():
        if name.is_file():  # each template filled in from the installed package
            written = registry / "model-releases/iris" / name.name.removesuffix(".tmpl")
            assert "{{" not in written.read_text()
    assert "class IrisClassifier:" in (registry / "model-releases/iris/service.py").read_text()
    git(registry, "add", "-A")
    git(registry, "commit", "-q", "-S", "-m", "add iris")
    rc("release", "iris", "1.0.0")
    rc("mark-stable", "iris", "1.0.0")
    service = registry / "model-releases/iris/service.py"
    service.write_text(service.read_text() + "\n# 1.1.0\n")
    git(registry, "commit", "-q", "-S", "-am", "iris: 1.1.0")
    rc("release", "iris", "1.1.0", "--no-build")
    rc("revert", "iris", "--reason", "wheel test")
    shown = json.loads(rc("show", "iris", "--json"))
    assert shown["version"] == "1.0.0" and shown["rollback"]["from"] == "1.1.0"
    rc("verify", "iris", "1.0.0")
    tags = git(registry, "tag", "--list")
    assert {"release/iris/v1.0.0", "stable/iris/v1.0.0", "rejected/iris/v1.1.0"} <= set(
        tags.split()
    )
