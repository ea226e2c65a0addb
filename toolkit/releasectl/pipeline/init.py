"""`releasectl init`: the registry's layout in one signed commit: the trust root,
the pipeline's workflows and their lock, and on request the example Argo CD
Application. Pipeline work, so it sits above the registry it writes
(docs/ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from releasectl import git as g
from releasectl import trailers
from releasectl.errors import OperationFailed
from releasectl.git import ZERO
from releasectl.names import REGISTRY_DIR
from releasectl.pipeline.lock import LOCK_FILE, Source, compile_lock
from releasectl.pipeline.workflows import templates
from releasectl.registry.landing import Change, Landed, land_local, require_branch
from releasectl.registry.sharing import rulesets
from releasectl.render import application
from releasectl.signing import (
    OPENPGP_FILE,
    SSH_FILE,
    TrustRoot,
    parse_openpgp,
    public_identity,
    write_signers_copy,
)
from releasectl.view import ADMINS_FILE, present, trust_root


def init_files(git: g.Git, source: Source | None = None) -> dict[str, str]:
    """The files `init` adds: the trust root holding the configured signing key
    for user.email, a README in the registry folder, the pipeline's GitHub
    Actions workflows (an existing file is never overwritten) and, when the
    source to install releasectl from is named, the lock the workflows install."""
    email = g.config_get(git, "user.email")
    if not email:
        raise OperationFailed("user.email is not set", "git config user.email you@example.com")
    kind, identity = public_identity(git)
    files = {
        f"{REGISTRY_DIR}/README.md": (
            "# Model releases\n\nOne folder per model; see `releasectl --help`.\n"
        )
    }
    files.update(templates())
    files.update(rulesets())  # the tag rulesets a GitHub admin imports (README, "Trust")
    if source is not None and source.named:
        files[LOCK_FILE] = compile_lock(source)
    if kind == "ssh":
        files[SSH_FILE] = f'{email} namespaces="git" {identity}\n'
        # The admin role (docs/ARCHITECTURE.md, "Trust"): the initialising key.
        files[ADMINS_FILE] = f'{email} namespaces="git" {identity}\n'
    else:
        files[SSH_FILE] = '# SSH signers: <email> namespaces="git" <key>\n'
        files[OPENPGP_FILE] = f"{email} {identity}\n"
    return files


def init(
    git: g.Git, *, source: Source | None = None, dry_run: bool = False, kubernetes: bool = False
) -> tuple[dict[str, str], Landed | None]:
    """Create the registry layout in one signed commit. Already a registry:
    nothing, except the example Argo CD Application `kubernetes` asks for."""
    branch = require_branch(git)
    base = g.rev_parse(git, "HEAD")
    extra = _argocd_files(git, branch) if kubernetes else {}
    if base is not None and present(git, base, SSH_FILE):
        missing = {p: t for p, t in extra.items() if g.read_blob(git, base, p) is None}
        if not missing or dry_run:
            return missing, None
        change = Change(
            base=base,
            message="Add the example Argo CD Application\n",
            files=missing,
            sync_paths=tuple(missing),
        )
        return missing, land_local(git, trust_root(git, base), branch, change)
    files = {
        path: text
        for path, text in {**init_files(git, source), **extra}.items()
        if base is None or g.read_blob(git, base, path) is None
    }
    if dry_run:
        return files, None
    trust = TrustRoot(files[SSH_FILE], parse_openpgp(files.get(OPENPGP_FILE, "")))
    # The first commit that adds the trust root is trusted by its own content.
    change = Change(
        base=base or ZERO,
        message="Set up the releasectl registry\n\n"
        + trailers.block({trailers.TRUST_ROOT: SSH_FILE}),
        files=files,
        sync_paths=tuple(files),
    )
    return files, land_local(git, trust, branch, change)


def point_git_at_trust_root(git: g.Git) -> tuple[Path | None, bool]:
    """Set `gpg.ssh.allowedSignersFile` to releasectl's verified copy of the
    trust root at HEAD, so that git's own `log --show-signature` and
    `verify-commit` work in the registry (docs/ARCHITECTURE.md, "Trust").
    Returns the copy's path (None: HEAD has no trust root) and whether the
    setting changed."""
    if g.rev_parse(git, "HEAD") is None or not present(git, "HEAD", SSH_FILE):
        return None, False
    path = write_signers_copy(git, trust_root(git, "HEAD"))
    if g.config_get(git, "gpg.ssh.allowedSignersFile") == str(path):
        return path, False
    g.config_set(git, "gpg.ssh.allowedSignersFile", str(path))
    return path, True


def _argocd_files(git: g.Git, branch: str) -> dict[str, str]:
    """The example Argo CD Application, pointing at this repository's origin."""
    origin = g.config_get(git, "remote.origin.url")
    remote = origin is not None and ("://" in origin or origin.startswith("git@"))
    url = origin if remote else None  # a local path means nothing to Argo CD
    return {application.path(): application.text(url, branch)}


@dataclass(frozen=True)
class InitOutcome:
    """What `init` made, or with `dry_run` would make; `to_json` is its `--json`
    document."""

    files: dict[str, str]  # path -> text added (empty: already a registry, nothing to add)
    landed: Landed | None  # the commit made; None in a dry run or when nothing was added
    signers: Path | None  # the verified trust root's copy git reads (not in a dry run)
    pointed: bool  # git's gpg.ssh.allowedSignersFile was set to it by this run
    dry_run: bool

    @property
    def created(self) -> list[str]:
        return sorted(self.files)

    @property
    def commit(self) -> str | None:
        return self.landed.commit if self.landed else None

    @property
    def new_registry(self) -> bool:
        """A registry was set up (not only the Argo CD example added to one)."""
        return SSH_FILE in self.files

    @property
    def locked(self) -> bool:
        """The workflows' lock is among the files (a source was named)."""
        return LOCK_FILE in self.files

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "commit": self.commit,
            "allowed_signers_file": str(self.signers) if self.signers else None,
            "dry_run": self.dry_run,
        }


def set_up(git: g.Git, *, source: Source | None, dry_run: bool, kubernetes: bool) -> InitOutcome:
    """`init`, then (unless a dry run) git pointed at the verified trust root."""
    files, landed = init(git, source=source, dry_run=dry_run, kubernetes=kubernetes)
    signers, pointed = (None, False) if dry_run else point_git_at_trust_root(git)
    return InitOutcome(files, landed, signers, pointed, dry_run)
