"""`releasectl init` and `releasectl new`: the registry's layout and a model's
first files."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from . import git as g
from . import manifest as mf
from .changes import Change, Landed, land_local, require_branch
from .errors import BadInput, OperationFailed
from .git import ZERO
from .lock import LOCK_FILE, Source, compile_lock
from .names import REGISTRY_DIR, check_model, model_dir
from .signing import OPENPGP_FILE, SSH_FILE, TrustRoot, parse_openpgp, public_identity
from .workflows import templates


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
    if source is not None and source.named:
        files[LOCK_FILE] = compile_lock(source)
    if kind == "ssh":
        files[SSH_FILE] = f'{email} namespaces="git" {identity}\n'
    else:
        files[SSH_FILE] = '# SSH signers: <email> namespaces="git" <key>\n'
        files[OPENPGP_FILE] = f"{email} {identity}\n"
    return files


def init(
    git: g.Git, *, source: Source | None = None, dry_run: bool = False
) -> tuple[dict[str, str], Landed | None]:
    """Create the registry layout in one signed commit. Already a registry: nothing."""
    branch = require_branch(git)
    base = g.rev_parse(git, "HEAD")
    if base is not None and g.read_blob(git, base, SSH_FILE) is not None:
        return {}, None
    files = {
        path: text
        for path, text in init_files(git, source).items()
        if base is None or g.read_blob(git, base, path) is None
    }
    if dry_run:
        return files, None
    trust = TrustRoot(files[SSH_FILE], parse_openpgp(files.get(OPENPGP_FILE, "")))
    # The first commit that adds the trust root is trusted by its own content.
    change = Change(
        base=base or ZERO,
        message="Set up the releasectl registry\n\nReleasectl-Trust-Root: " + SSH_FILE + "\n",
        files=files,
        sync_paths=tuple(files),
    )
    return files, land_local(git, trust, branch, change)


def new_model_folder(root: Path, model: str) -> Path:
    """The folder `new_model` would write, refused as it refuses (`new --dry-run`)."""
    check_model(model)
    folder = root / model_dir(model)
    if folder.exists():
        raise BadInput(f"{model_dir(model)} already exists", "pick another name")
    return folder


def new_model(root: Path, model: str, *, port: int = 3000) -> list[Path]:
    """Write `model-releases/MODEL/` from the template (the iris example's
    sources: a model that releases, builds and serves as it is, to be
    replaced by yours); refuses an existing folder."""
    folder = new_model_folder(root, model)
    template = resources.files("releasectl") / "templates" / "model"
    written: list[Path] = []
    folder.mkdir(parents=True)
    try:
        for item in template.iterdir():
            if item.name.startswith((".", "__")):
                continue
            (folder / item.name).write_text(item.read_text())
            written.append(folder / item.name)
        (folder / "release.yaml").write_text(mf.render_new(model, port=port))
        written.append(folder / "release.yaml")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return written
