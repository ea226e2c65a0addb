"""The lock the workflows install releasectl from: `.releasectl/requirements.lock`,
releasectl at the version that wrote it and every dependency pinned by hash,
compiled by uv (`uv pip compile --generate-hashes`) for the workflows' runner
and installed there with `pip install --require-hashes --no-deps`.

The source is never guessed: the lock records the index or wheel folder it was
compiled from, as pip options, because a name looked up on a public index that
this project does not control is how dependency confusion happens. With
serving/local/envs.py (the environments bentos are served from), this is one of
the two modules that run uv (docs/ARCHITECTURE.md, "Supply chain")."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata

from releasectl import __version__
from releasectl.errors import BadInput, OperationFailed, Refused

LOCK_FILE = ".releasectl/requirements.lock"
# GitHub's ubuntu-latest runner with actions/setup-python's 3.11, as the workflows ask.
RUNNER_PYTHON = "3.11"
RUNNER_PLATFORM = "x86_64-manylinux_2_28"
DEFAULT_EXTRAS = ("example",)  # `releasectl new` scaffolds the iris example: scikit-learn
_UPGRADE = "releasectl upgrade-workflows"


@dataclass(frozen=True)
class Source:
    """Where releasectl and its dependencies come from, as pip options."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    @property
    def named(self) -> bool:
        return bool(self.index_url or self.find_links)

    def options(self) -> list[str]:
        out = [f"--index-url {self.index_url}"] if self.index_url else []
        out += [f"--find-links {link}" for link in self.find_links]
        return [*out, "--no-index"] if self.no_index else out

    def describe(self) -> str:
        return " ".join(self.options()) or "no source"

    def uv_env(self) -> dict[str, str]:
        """The same source as uv's variables: uv makes the environments bentos are
        served from (serving/local/envs.py), and in CI it must use this source too."""
        env = {"UV_INDEX_URL": self.index_url} if self.index_url else {}
        if self.find_links:
            env["UV_FIND_LINKS"] = ",".join(self.find_links)
        if self.no_index:
            env["UV_NO_INDEX"] = "1"
        return env


def read_source(text: str) -> Source:
    """The source recorded in a lock's option lines."""
    index_url, links, no_index = None, [], False
    for line in text.splitlines():
        option, _, value = line.strip().partition(" ")
        if option in ("--index-url", "-i"):
            index_url = value.strip()
        elif option in ("--find-links", "-f"):
            links.append(value.strip())
        elif option == "--no-index":
            no_index = True
    return Source(index_url, tuple(links), no_index)


def header(version: str, source: Source, extras: tuple[str, ...]) -> str:
    spec = f"releasectl[{','.join(extras)}]" if extras else "releasectl"
    return (
        f"# {spec}=={version} and every dependency, pinned by hash, for CPython "
        f"{RUNNER_PYTHON} on {RUNNER_PLATFORM} (the workflows' runner).\n"
        "# The workflows install exactly this: pip install --require-hashes --no-deps -r <lock>.\n"
        f"# Written by releasectl {__version__} with uv pip compile --generate-hashes; "
        f"do not edit, run `{_UPGRADE}`.\n" + "".join(f"{line}\n" for line in source.options())
    )


def compile_lock(
    source: Source, *, version: str = __version__, extras: tuple[str, ...] = DEFAULT_EXTRAS
) -> str:
    """The lock's text: uv resolves `releasectl[extras]==version` from `source`
    for the runner's Python and platform, with every distribution's hash."""
    if not source.named:
        raise BadInput(
            "no source to lock releasectl from",
            "name it: --index-url URL (your index, or https://pypi.org/simple) "
            "or --find-links DIR (wheels built from a commit of releasectl)",
        )
    spec = f"releasectl[{','.join(extras)}]=={version}" if extras else f"releasectl=={version}"
    argv = [_uv(), "pip", "compile", "-", "--quiet", "--no-config", "--no-header"]
    argv += ["--generate-hashes", "--python-version", RUNNER_PYTHON]
    argv += ["--python-platform", RUNNER_PLATFORM]
    if source.index_url:
        argv += ["--index-url", source.index_url]
    for link in source.find_links:
        argv += ["--find-links", link]
    if source.no_index:
        argv += ["--no-index"]
    # Only the source named here: no uv.toml, no UV_INDEX_URL from the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k == "UV_CACHE_DIR"}
    with tempfile.TemporaryDirectory(prefix="releasectl-lock-") as cwd:
        proc = subprocess.run(
            argv,
            input=spec + "\n",
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        last = " / ".join(line for line in proc.stderr.strip().splitlines()[-3:] if line)
        raise OperationFailed(
            f"could not lock {spec} from {source.describe()}: {last}",
            "the source must serve releasectl at this version and its dependencies",
        )
    return header(version, source, extras) + "\n" + proc.stdout


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise OperationFailed("uv is not installed", "pip install uv") from None
        return found


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` requirement whose markers
    hold here (continuation lines, hashes, comments and options skipped)."""
    from packaging.requirements import InvalidRequirement, Requirement

    found = {}
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].split(" --", 1)[0].rstrip(" \\").strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        versions = [s.version for s in req.specifier if s.operator == "=="]
        if versions and (req.marker is None or req.marker.evaluate()):
            found[_canonical(req.name)] = versions[0]
    return found


def check_installed(text: str, where: str) -> str:
    """The running releasectl, and every package the lock pins, must be what the
    lock names (ci setup runs this in every job). Returns a one-line account."""
    locked = pins(text)
    want = locked.get("releasectl")
    if want is None:
        raise Refused(f"{where} pins no releasectl", f"rewrite it with `{_UPGRADE}`")
    if want != __version__:
        raise Refused(
            f"releasectl {__version__} is running but {where} pins releasectl {want}",
            f"the workflows install only the lock's version; to move to {__version__}, "
            f"run `{_UPGRADE}` with it and commit",
        )
    wrong = []
    for name, version in sorted(locked.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = "not installed"
        if have != version:
            wrong.append(f"{name} {have} (lock: {version})")
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise Refused(
            f"the environment is not the one {where} pins: {', '.join(wrong[:3])}{more}",
            "install from the lock: pip install --require-hashes --no-deps -r <lock>",
        )
    return f"releasectl {want} and {len(locked) - 1} dependencies as {where} pins them"
