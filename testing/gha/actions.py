"""The built-in `uses:` stand-ins (actions/checkout, actions/setup-python) and the
StepContext every stand-in, built-in or passed in by a test, receives."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing.gha.results import SHA40
from testing.gha.triggers import Event


@dataclass
class StepContext:
    """What a `uses:` stand-in gets. Return outputs; raise to fail the step."""

    job: str
    step_id: str | None
    uses: str
    inputs: dict[str, str]
    env: dict[str, str]  # the step's process environment (GITHUB_OUTPUT etc. included)
    workspace: Path
    remote: Path
    event: Event
    github: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)

    def run(self, *argv: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            argv,
            cwd=cwd or self.workspace,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        self.log(f"$ {shlex.join(argv)}\n{proc.stdout}{proc.stderr}".rstrip())
        if proc.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc.stdout.strip()


def _checkout_target(ctx: StepContext, ref: str, sha: str) -> tuple[list[str], list[str]]:
    """(fetch refspecs, checkout args) the way actions/checkout picks them."""
    if ref and not ref.startswith("refs/"):  # a short name from with.ref: branch, else tag
        exists = (
            subprocess.run(
                ["git", "rev-parse", "-q", "--verify", f"refs/heads/{ref}"],
                cwd=ctx.remote,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        ref = f"refs/heads/{ref}" if exists else f"refs/tags/{ref}"
    if ref.startswith("refs/heads/"):
        branch = ref[len("refs/heads/") :]
        return [f"+{sha or ref}:refs/remotes/origin/{branch}"], [
            "-B",
            branch,
            f"refs/remotes/origin/{branch}",
        ]
    if ref.startswith("refs/tags/"):
        return [f"+{ref}:{ref}"], ["--detach", ref]
    if ref.startswith("refs/pull/"):
        local = "refs/remotes/pull/" + ref[len("refs/pull/") :]
        return [f"+{sha or ref}:{local}"], ["--detach", local]
    if sha:
        return [sha], ["--detach", sha]
    raise RuntimeError(f"actions/checkout stand-in: cannot resolve ref {ref!r}")


def checkout(ctx: StepContext) -> dict[str, str]:
    """actions/checkout: a real fetch from the bare remote into the workspace at
    with.ref (else the event's ref and sha), fetch-depth 0 = all history and
    tags, N = shallow. persist-credentials (default true) writes a placeholder
    auth header into .git/config, as the real action does, so that tests can see it."""
    repo = ctx.inputs.get("repository", "")
    if repo and repo != ctx.github["repository"]:
        raise RuntimeError(f"actions/checkout stand-in: only this repository, not {repo!r}")
    dest = (ctx.workspace / ctx.inputs.get("path", "")).resolve()
    if not dest.is_relative_to(ctx.workspace.resolve()):
        raise RuntimeError(f"actions/checkout: path {dest} is outside the workspace")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with_ref = ctx.inputs.get("ref", "")
    if SHA40.fullmatch(with_ref):
        ref, sha = "", with_ref
    else:
        ref, sha = (with_ref, "") if with_ref else (ctx.event.ref, ctx.event.sha)
    depth = int(ctx.inputs.get("fetch-depth") or 1)
    specs, target = _checkout_target(ctx, ref, sha)
    ctx.run("git", "init", "-q", str(dest))
    ctx.run("git", "remote", "add", "origin", f"file://{ctx.remote.resolve()}", cwd=dest)
    if depth == 0:
        everything = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        ctx.run("git", "fetch", "-q", "--prune", "origin", *everything, cwd=dest)
        # Separately: the event's own commit may overlap a branch fetched above.
        ctx.run("git", "fetch", "-q", "origin", *specs, cwd=dest)
    else:
        if ctx.inputs.get("fetch-tags") == "true":
            specs = [*specs, "+refs/tags/*:refs/tags/*"]
        ctx.run("git", "fetch", "-q", "--no-tags", f"--depth={depth}", "origin", *specs, cwd=dest)
    ctx.run("git", "checkout", "-q", "--force", *target, cwd=dest)
    if ctx.inputs.get("persist-credentials", "true") != "false":
        ctx.run(
            "git",
            "config",
            "--local",
            "http.https://github.com/.extraheader",
            "AUTHORIZATION: basic ***",
            cwd=dest,
        )
    commit = ctx.run("git", "rev-parse", "HEAD", cwd=dest)
    return {"ref": ref or sha, "commit": commit}


def setup_python(ctx: StepContext) -> dict[str, str]:
    """actions/setup-python: installs nothing; records the requested version and
    reports the python already on PATH."""
    python = shutil.which("python", path=ctx.env.get("PATH")) or ""
    version = ctx.inputs.get("python-version", "")
    ctx.log(f"setup-python stand-in: requested {version!r}, using {python}")
    return {"python-version": version, "python-path": python}


BUILTIN_ACTIONS: dict[str, Callable[[StepContext], dict[str, str]]] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
}
