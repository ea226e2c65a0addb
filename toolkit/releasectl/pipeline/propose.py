"""`releasectl propose`: a release as a pull request (docs/ARCHITECTURE.md,
"The registry"). A new branch, made from the current HEAD, holds one signed
commit with the manifest change (version, serial, bundle pin); the working
tree and the current branch stay as they are. Also the pre-commit hook's
manifest checks.
"""

from __future__ import annotations

import dataclasses
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from releasectl import git as g
from releasectl.errors import BadInput, OperationFailed, ReleasectlError
from releasectl.manifest import schema as mf
from releasectl.names import MANIFEST, REGISTRY_DIR, ModelName, model_dir
from releasectl.registry.landing import head, land_on_new_branch, require_clean
from releasectl.registry.release import Prebuild, builds, plan_release
from releasectl.registry.succession import Succession
from releasectl.signing import TrustRoot, check_signing_key
from releasectl.view import trust_root


@dataclass(frozen=True)
class Proposal:
    """What `propose` made, or with `dry_run` would make; `to_json` is its
    `--json` document."""

    branch: str
    commit: str | None  # None: a dry run makes no commit
    serial: int
    digest: str | None
    pushed: bool
    remote: str | None
    gh_command: str
    dry_run: bool = False

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def branch_name(model: str, version: str) -> str:
    return f"propose/{model}/v{version}"


def propose(
    git: g.Git,
    model: str,
    version: str,
    *,
    base: str = "main",
    push: bool = False,
    build: bool | None = None,
    retrain: bool = False,
    dry_run: bool = False,
) -> Proposal:
    """The release of MODEL VERSION on a new branch made from the current HEAD
    (so a feature branch's commits are in it); `base` is only the branch the
    pull request targets, whose signers judge it, as `releasectl check` does."""
    model = ModelName.parse(model)
    require_clean(git, model_dir(model))
    start = head(git)
    target = _target(git, base)
    branch = branch_name(model, version)
    if g.rev_parse(git, f"refs/heads/{branch}") is not None:
        raise OperationFailed(f"branch {branch} already exists", "delete it or pick a version")
    trust = trust_root(git, target)
    if dry_run:
        return _preview(git, trust, model, version, base, start, push, build)
    with tempfile.TemporaryDirectory(prefix="releasectl-propose-") as tmp:
        builder = Prebuild(git, model, version, build, Path(tmp), retrain=retrain)
        try:
            p = plan_release(
                git, trust, model, version, start, builder.at(start), will_build=builder.will(start)
            )
            pin = p.pin
            if p.tagged_existing or p.change is None:
                raise OperationFailed(
                    f"{g.current_branch(git) or 'HEAD'} already declares {model} {version}",
                    f"propose from the commit before that version's change, or run "
                    f"`releasectl release {model} {version} --dry-run` to print its digest",
                )
            # No tag, no working-tree sync: the tag comes after the merge.
            change = dataclasses.replace(p.change, tags=(), sync_paths=())
            landed = land_on_new_branch(git, trust, branch, change)
        except BaseException:
            builder.undo()
            raise
    assert landed.commit is not None
    remote = None
    if push:
        remote = g.config_get(git, f"branch.{base}.remote") or "origin"
        result = g.push(git, remote, [f"refs/heads/{branch}:refs/heads/{branch}"])
        if result.returncode != 0:
            raise OperationFailed(f"push to {remote} failed: {result.stderr.strip()[-300:]}")
    digest = pin.digest if pin else None
    gh = _gh_command(model, version, base, p.serial, digest)
    return Proposal(branch, landed.commit, p.serial, digest, push, remote, gh)


def _gh_command(model: str, version: str, base: str, serial: int, digest: str | None) -> str:
    title = f"Release {model} {version}"
    body = f"Releases {model} {version} (serial {serial})."
    if digest:
        body += f" Bundle digest: {digest}."
    branch = branch_name(model, version)
    return shlex.join(
        ["gh", "pr", "create", "--base", base, "--head", branch, "--title", title, "--body", body]
    )


def _preview(
    git: g.Git,
    trust: TrustRoot,
    model: str,
    version: str,
    base: str,
    start: str,
    push: bool,
    build: bool | None,
) -> Proposal:
    """`propose --dry-run`: the rest of `propose`'s refusals, in its order (the
    release plan's, then the signing key), with no bundle built (that writes to
    the store) and no branch made; the push itself is tried only by the real run.
    The proposal returned has no commit."""
    will_build = builds(git, model, start, build)
    p = plan_release(git, trust, model, version, start, will_build=will_build)
    if p.tagged_existing or p.change is None:
        raise OperationFailed(f"{base} already declares {model} {version}")
    check_signing_key(git)
    remote = (g.config_get(git, f"branch.{base}.remote") or "origin") if push else None
    gh = _gh_command(model, version, base, p.serial, None)
    return Proposal(branch_name(model, version), None, p.serial, None, False, remote, gh, True)


def _target(git: g.Git, base: str) -> str:
    """The pull request's target: the branch here, else its remote-tracking branch."""
    remote = g.config_get(git, f"branch.{base}.remote") or "origin"
    for rev in (base, f"refs/remotes/{remote}/{base}"):
        commit = g.rev_parse(git, rev)
        if commit is not None:
            return commit
    raise BadInput(f"unknown base branch {base!r}", "name the branch the pull request targets")


def manifest_file_problems(git: g.Git, files: list[str]) -> list[str]:
    """Problems with staged manifests (pre-commit passes the changed files):
    schema, model = folder, and a rising version with serial + 1 against HEAD."""
    problems = []
    for name in files:
        rel = Path(name)
        parts = rel.parts
        if len(parts) != 3 or parts[0] != REGISTRY_DIR or parts[2] != MANIFEST:
            continue
        model = parts[1]
        try:
            manifest = mf.load((git.cwd / rel).read_text(), name, model=model)
        except (ReleasectlError, OSError) as exc:
            problems.append(exc.message if isinstance(exc, ReleasectlError) else str(exc))
            continue
        before_text = g.read_blob(git, "HEAD", rel.as_posix())
        if before_text is None:
            continue
        try:
            before = mf.load(before_text, name, model=model)
        except ReleasectlError:
            continue
        step = Succession.between(before, manifest)
        if step.unchanged:
            problems.append(f"{name}: changed without a release: raise version and serial")
        elif not step.version_rises:
            problems.append(f"{name}: version {manifest.version} is not above {before.version}")
        elif not step.serial_follows:
            problems.append(f"{name}: serial must be {step.expected_serial}, not {manifest.serial}")
    return problems
