"""`releasectl new`: writes a model's first files (docs/ARCHITECTURE.md,
"New models"); `init`, the registry's layout, is `releasectl.pipeline.init`.
"""

from __future__ import annotations

import errno
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path

from releasectl import git as g
from releasectl.errors import BadInput, OperationFailed, ReleasectlError
from releasectl.manifest import edits
from releasectl.manifest import schema as mf
from releasectl.names import MANIFEST, MODEL_RE, REGISTRY_DIR, ModelName, model_dir
from releasectl.registry.spellings import Spellings, rename
from releasectl.signing import SSH_FILE
from releasectl.view import present


def require_registry(git: g.Git) -> None:
    """`new` needs `init` first: a model with no trust root to sign against
    would be released by nobody (exit 2, naming `init`)."""
    unborn = g.unborn_head(git)
    if unborn is not None:
        raise BadInput(unborn.message, unborn.hint)
    if not present(git, "HEAD", SSH_FILE):
        raise BadInput(
            f"{git.cwd} is not a registry yet: {SSH_FILE} is not committed",
            "run `releasectl init` first (the trust root and the workflows, one signed commit)",
        )


# What the template's code imports, pinned in its bentofile to the versions
# installed where `new` runs: the environment that trains and serves it here.
TEMPLATE_PACKAGES = ("bentoml", "scikit-learn", "numpy", "joblib", "pydantic", "pyyaml")
FIRST_PORT = 3000
STRATEGIES = ("bluegreen", "canary")
# `new --strategy canary` (docs/ARCHITECTURE.md, "Deployment strategies"): a mirror
# step, then weight steps, within a bake they fit in; the answers' `label` compared.
CANARY_BAKE = "2m"
CANARY_COMPARE = """\
  # Candidate vs stable on the same mirrored requests: the share of answers whose
  # label differs, and the candidate's latency over the stable one's.
  compare:
    field: label
    max_disagreement: 0.1
    max_latency_ratio: 2.0
"""
CANARY_STRATEGY = """\
  # A canary: the steps run under `watch` (deploy --watch, or the unattended
  # watcher), each advancing only when its measurements pass; then 100% for the
  # rest of the bake. `releasectl promote` skips to 100%, `releasectl abort` goes back.
  strategy:
    kind: canary
    mirror_routes: [/predict]     # copies of live requests; users get the stable answer
    client_key: X-Client-Id       # the same value stays on one side of a split
    steps:
      - {mirror: 100, for: 30s}
      - {weight: 10, for: 30s}
      - {weight: 50, for: 30s}
"""
TEMPLATE_SUFFIX = ".tmpl"
SKIPPED = frozenset({"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


@dataclass(frozen=True)
class NewModel:
    """The files of a new model folder, before anything is written."""

    model: str
    port: int
    files: dict[str, bytes]  # path relative to the model's folder -> content
    source: str | None = None  # the folder copied (--from), None for the template
    source_model: str | None = None  # the copied model's name, renamed to `model`
    renamed: dict[str, int] = field(default_factory=dict)  # copied file -> names renamed
    unpinned: tuple[str, ...] = ()  # template packages not installed here: left unpinned
    executable: frozenset[str] = frozenset()  # copied files that keep their exec bit

    @property
    def folder(self) -> str:
        return model_dir(self.model)


def plan_new(
    root: Path,
    model: str,
    *,
    port: int | None = None,
    source: str | None = None,
    cwd: Path | None = None,
    strategy: str | None = None,
) -> NewModel:
    """`model-releases/MODEL/` from the template (`strategy`: its deploy.strategy,
    bluegreen by default), or a copy of `source` (a model of this registry, else a
    model folder relative to `cwd`) renamed for MODEL. Refuses a bad name, an
    existing folder and a source that is not a model folder (all exit 2)."""
    model = ModelName.parse(model)
    if strategy is not None and strategy not in STRATEGIES:
        raise BadInput(
            f"--strategy {strategy}: not a strategy new scaffolds",
            f"use one of: {', '.join(STRATEGIES)}",
        )
    if strategy is not None and source is not None:
        raise BadInput(
            "--strategy is for the template: --from copies the source's deploy.strategy",
            "drop one of them, and edit deploy.strategy in the copy",
        )
    if (root / model_dir(model)).exists():
        raise BadInput(f"{model_dir(model)} already exists", "pick another name")
    port = _port(root) if port is None else port
    if source is None:
        files, missing = _template(model, port, strategy == "canary")
        mf.load(files[MANIFEST].decode(), MANIFEST, model=model)  # e.g. a port out of range
        return NewModel(model, port, files, unpinned=missing)
    return _from_folder(root, model, port, _source_folder(root, source, cwd or root))


def _port(root: Path) -> int:
    """The lowest port from FIRST_PORT that no other model's manifest takes."""
    taken = set()
    for path in (root / REGISTRY_DIR).glob(f"*/{MANIFEST}"):
        try:
            taken.add(mf.load(path.read_text(), str(path)).deploy.port)
        except (ReleasectlError, OSError, UnicodeDecodeError):
            continue  # a broken manifest is `check`'s business, not new's
    return next(port for port in range(FIRST_PORT, 65536) if port not in taken)


def _pins(packages: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The bentofile's package lines, each pinned to the installed version."""
    lines, missing = [], []
    for name in packages:
        try:
            lines.append(f'    - "{name}=={metadata.version(name)}"')
        except metadata.PackageNotFoundError:
            lines.append(f'    - "{name}"  # not installed when scaffolded: pin it')
            missing.append(name)
    return "\n".join(lines), tuple(missing)


def _template(
    model: str, port: int, canary: bool = False
) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """The template's files filled in for MODEL (blue-green, or with `canary` its
    canary form), and the packages left unpinned."""
    names = Spellings(model)
    packages, missing = _pins(TEMPLATE_PACKAGES)
    values = {
        "{{model}}": model,
        "{{Model}}": names.camel,
        "{{model_id}}": names.snake,
        "{{metric}}": names.metric,
        "{{port}}": str(port),
        "{{packages}}": packages,
        "{{bake}}": CANARY_BAKE if canary else "1m",
        "{{compare}}": CANARY_COMPARE if canary else "",
        "{{strategy}}": CANARY_STRATEGY if canary else "",
    }
    files = {}
    for item in (resources.files("releasectl") / "templates" / "model").iterdir():
        if not item.name.endswith(TEMPLATE_SUFFIX):
            continue
        text = item.read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        assert "{{" not in text, f"{item.name}: a placeholder left unfilled"
        files[item.name.removesuffix(TEMPLATE_SUFFIX)] = text.encode()
    return files, missing


def _source_folder(root: Path, source: str, cwd: Path) -> Path:
    """A model of this registry by name, else a folder."""
    if MODEL_RE.fullmatch(source) and (root / model_dir(source)).is_dir():
        return root / model_dir(source)
    given = cwd / source
    if given.is_symlink():
        _plain(given, source)
    folder = given.resolve()
    if not folder.is_dir():
        raise BadInput(
            f"--from {source}: no model {source!r} in {REGISTRY_DIR}/ and no such folder",
            f"name a model (`releasectl list`) or a folder holding a {MANIFEST}",
        )
    if (folder / MANIFEST).is_symlink():
        _plain(folder / MANIFEST, source)
    if not (folder / MANIFEST).is_file():
        raise BadInput(
            f"--from {source}: {folder} has no {MANIFEST}: not a model folder",
            f"name a model (`releasectl list`) or a folder holding a {MANIFEST}",
        )
    return folder


def _plain(path: Path, source: str) -> None:
    """Only plain files and folders are copied: a symlink (which could name
    the operator's signing key) or a special file is refused, never followed
    (docs/ARCHITECTURE.md, "Crafted input")."""
    mode = path.lstat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        what = "a symlink" if stat.S_ISLNK(mode) else "not a plain file or folder"
        raise BadInput(
            f"--from {source}: {path} is {what}; nothing was written",
            "copy the file itself into the source folder, or remove it",
        )


def _from_folder(root: Path, model: str, port: int, folder: Path) -> NewModel:
    """A copy of the folder: its manifest made new (MODEL, never released, no
    pins, this port, analysis defaults if it had none) and, in every text file
    and file name, the source's name renamed where it starts a word
    (`spellings.rename`); other bytes are copied as they are."""
    shown = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else str(folder)
    where = f"{shown}/{MANIFEST}"
    old = mf.load((folder / MANIFEST).read_text(), where).model
    files: dict[str, bytes] = {}
    renamed: dict[str, int] = {}
    executable = set()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if SKIPPED & set(rel.parts):
            continue
        _plain(path, shown)
        if path.is_dir() or rel.as_posix() == MANIFEST:
            continue
        name, _ = rename(rel.as_posix(), old, model)
        data = path.read_bytes()
        if path.stat().st_mode & 0o111:
            executable.add(name)
        try:
            text, count = rename(data.decode(), old, model)
        except UnicodeDecodeError:
            files[name] = data  # binary: as it is
            continue
        files[name] = text.encode()
        if count:
            renamed[name] = count
    manifest, count = rename((folder / MANIFEST).read_text(), old, model)
    files[MANIFEST] = _new_manifest(manifest, where, model, port).encode()
    renamed[MANIFEST] = count
    return NewModel(
        model,
        port,
        files,
        source=shown,
        source_model=old,
        renamed=renamed,
        executable=frozenset(executable),
    )


def _new_manifest(text: str, source: str, model: str, port: int) -> str:
    """The copied manifest as a new model's: never released, nothing pinned."""
    document = mf.parse_document(text, source)
    name = str(model)  # a plain str: the manifest's YAML writer knows no ModelName
    bundle = {"bento": name, "digest": None, "archive": None, "trained": None}
    changes: dict[str, object] = {
        "model": name,
        "version": "0.0.0",
        "serial": 0,
        "rollback": None,
        "bundle": bundle,
        "deploy": {"port": port},
    }
    if not document.get("analysis"):
        template = _template(model, port)[0][MANIFEST].decode()
        changes["analysis"] = mf.parse_document(template, MANIFEST)["analysis"]
    return edits.edit(text, source, changes, model=model)


def write_new(root: Path, plan: NewModel) -> list[Path]:
    """All or nothing: the files go into a temporary folder beside the model's,
    renamed into place in one step."""
    registry = root / REGISTRY_DIR
    made_registry = not registry.exists()
    registry.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".new-{plan.model}-", dir=registry))
    try:
        for rel, data in plan.files.items():
            path = staging / rel
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                if rel in plan.executable:
                    path.chmod(0o755)
            except OSError as exc:
                raise OperationFailed(
                    f"cannot write {plan.folder}/{rel}: {exc.strerror}", "nothing was written"
                ) from None
        staging.chmod(0o755)  # mkdtemp makes it 0700
        try:
            staging.rename(root / plan.folder)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise OperationFailed(f"cannot create {plan.folder}: {exc.strerror}") from None
            raise BadInput(f"{plan.folder} already exists", "pick another name") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made_registry:
            shutil.rmtree(registry, ignore_errors=True)
        raise
    return [root / plan.folder / rel for rel in sorted(plan.files)]


def new_model(
    root: Path,
    model: str,
    *,
    port: int | None = None,
    source: str | None = None,
    cwd: Path | None = None,
    dry_run: bool = False,
    strategy: str | None = None,
) -> NewModelOutcome:
    """Plan the model's folder and, unless `dry_run`, write it."""
    plan = plan_new(root, model, port=port, source=source, cwd=cwd, strategy=strategy)
    if dry_run:
        return NewModelOutcome(plan, [], dry_run=True)
    written = write_new(root, plan)
    return NewModelOutcome(plan, [str(path.relative_to(root)) for path in written])


@dataclass(frozen=True)
class NewModelOutcome:
    """What `new` wrote, or with `dry_run` would write; `to_json` is its `--json`
    document."""

    plan: NewModel
    created: list[str]  # the files written, relative to the registry (none in a dry run)
    dry_run: bool = False

    @property
    def would_create(self) -> list[str]:
        return sorted(f"{self.plan.folder}/{name}" for name in self.plan.files)

    def to_json(self) -> dict[str, object]:
        plan = self.plan
        doc: dict[str, object] = {
            "folder": plan.folder,
            "source": plan.source,
            "port": plan.port,
            "created": self.created,
        }
        if self.dry_run:
            return {**doc, "would_create": self.would_create, "dry_run": True}
        return {**doc, "dry_run": False}
