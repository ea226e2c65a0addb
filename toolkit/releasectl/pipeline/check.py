"""`releasectl check`: the pull-request check (docs/ARCHITECTURE.md,
"Roles and the one verified view").

For every model folder the change touches: the manifest validates, its model
is its folder, the version rises above the base's, the serial is the base's
+ 1, analysis thresholds are written out, and the bundle builds (its digest
is reported and must equal a pin if the manifest has one). Every commit of
the change must be signed by an allowed signer, judged by the allowed signers
of the BASE, so that a pull request cannot vouch for itself."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from releasectl import git as g
from releasectl import view
from releasectl.bundles.build import build_sources, explain_mismatch, recorded_files, store_for
from releasectl.errors import BadInput, OperationFailed, Refused, ReleasectlError
from releasectl.manifest import schema as mf
from releasectl.names import REGISTRY_DIR, manifest_path, parse_version
from releasectl.registry.builds import stranded
from releasectl.registry.history import history_of
from releasectl.registry.succession import Succession
from releasectl.registry.verified import highest_verified
from releasectl.signing import commit_verdicts
from releasectl.text import one_line
from releasectl.view import trust_root

if TYPE_CHECKING:
    from releasectl.serving.kubernetes.owners import DeployChanges


WARNING = "warning: "


@dataclass(frozen=True)
class Finding:
    subject: str  # a model, or "commits"
    check: str
    ok: bool
    detail: str
    # The kind of failure, None for a pass: the exit code is the class's
    # (docs/ARCHITECTURE.md, "Errors by kind").
    error: type[ReleasectlError] | None = None

    @property
    def code(self) -> int:
        return self.error.code if self.error is not None else 0

    def to_json(self) -> dict[str, object]:
        fields = {"subject": self.subject, "check": self.check, "ok": self.ok}
        return {**fields, "detail": self.detail, "code": self.code}


@dataclass
class Report:
    base: str
    head: str
    models: list[str]
    findings: list[Finding] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def error(self) -> type[ReleasectlError] | None:
        """The kind of failure the check ends with: trust and policy first, the
        ones a reviewer must not wave through."""
        failed = [f.error for f in self.findings if f.error is not None]
        for kind in (Refused, BadInput, OperationFailed):
            if any(issubclass(error, kind) for error in failed):
                return kind
        return None

    @property
    def code(self) -> int:
        return self.error.code if self.error is not None else 0

    def add(
        self,
        subject: str,
        check: str,
        ok: bool,
        detail: str,
        error: type[ReleasectlError] = OperationFailed,
    ) -> None:
        # Details quote what a pull request wrote; printed, annotated and put
        # in the job summary, each stays one line.
        self.findings.append(Finding(subject, check, ok, one_line(detail), None if ok else error))

    def warn(self, subject: str, check: str, detail: str) -> None:
        """A finding that passes but says what to change: `warning: ...`."""
        self.add(subject, check, True, f"{WARNING}{detail}")

    def to_json(self) -> dict[str, object]:
        """The `check --json` document (with the error added when it fails)."""
        return {
            "ok": self.ok,
            "base": self.base,
            "head": self.head,
            "models": self.models,
            "digests": self.digests,
            "findings": [f.to_json() for f in self.findings],
        }

    def markdown(self) -> str:
        lines = [
            f"### releasectl check: {'passed' if self.ok else 'FAILED'}",
            "",
            f"Base `{self.base[:12]}`, head `{self.head[:12]}`, "
            f"models: {', '.join(self.models) or 'none'}",
            "",
            "| | subject | check | detail |",
            "|---|---|---|---|",
        ]
        for f in self.findings:
            cells = (summary_line(x) for x in (f.subject, f.check, f.detail))
            mark = "❌" if not f.ok else "⚠️" if f.detail.startswith(WARNING) else "✅"
            lines.append(f"| {mark} | {' | '.join(cells)} |")
        for model, digest in self.digests.items():
            lines.append(f"\nBundle `{model}`: `{digest}`")
        return "\n".join(lines) + "\n"


def summary_line(text: str) -> str:
    """Text for one line, or one table cell, of a job summary: a `|` cannot end the cell."""
    return one_line(text).replace("|", "\\|")


def _changed_paths(git: g.Git, base: str, head: str, *pathspec: str) -> list[str]:
    return git.out("diff", "--name-only", "-z", f"{base}...{head}", "--", *pathspec).split("\0")


def _models_of(paths: list[str]) -> set[str]:
    prefix = f"{REGISTRY_DIR}/"
    return {p.split("/")[1] for p in paths if p.startswith(prefix) and p.count("/") >= 2}


def changed_models(git: g.Git, base: str, head: str) -> list[str]:
    return sorted(_models_of(_changed_paths(git, base, head, REGISTRY_DIR)))


def check(git: g.Git, base_rev: str, head_rev: str = "HEAD", *, build: bool = True) -> Report:
    from releasectl.serving.kubernetes.owners import classify

    base = g.rev_parse(git, base_rev)
    head = g.rev_parse(git, head_rev)
    if base is None or head is None:
        raise BadInput(f"unknown revision {base_rev if base is None else head_rev!r}")
    paths = [p for p in _changed_paths(git, base, head) if p]
    released = _models_of(paths)
    # The rules (trust files, config, lock, workflows, Argo CD Applications)
    # change only by an admin's commit (docs/ARCHITECTURE.md, "Trust").
    admin = [p for p in paths if view.owner(p) == view.ADMIN]
    # What Argo CD applies changes with deploy/, not only with a release
    # (docs/ARCHITECTURE.md, "Kubernetes"): every changed path there has an owner.
    outside = [p for p in paths if not p.startswith(f"{REGISTRY_DIR}/") and p not in admin]
    deploy = classify(git, base, head, outside)
    report = Report(base, head, sorted(released | set(deploy.by_model)))
    _check_commits(git, report)
    _check_admin_paths(git, report, admin)
    orphans = _check_indexed_folders(git, report, deploy)
    _check_deploy_folder(git, report, deploy, orphans)
    _check_namespaces(report, deploy)
    for model in report.models:
        if model in released:
            _check_model(git, report, model, build=build)
        else:
            _check_render_only(git, report, model)
    return report


def _check_admin_paths(git: g.Git, report: Report, paths: list[str]) -> None:
    """Every commit of the change that touched an admin path is signed by an
    admin of the base: a pull request cannot vouch for itself."""
    if not paths:
        return
    commits = git.out(
        "rev-list", "--full-history", f"{report.base}..{report.head}", "--", *paths
    ).split()
    admins = view.roles(git, report.base).admin
    verdicts = commit_verdicts(git, admins, commits)
    bad = [f"{c[:12]} ({verdicts[c].detail})" for c in commits if not verdicts[c].ok]
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    report.add(
        "admin",
        "signed",
        not bad,
        f"{shown} changed by commits not signed by an admin: {', '.join(bad)}"
        if bad
        else f"{shown} changed by admins only",
        Refused,
    )


def _check_indexed_folders(
    git: g.Git, report: Report, deploy: DeployChanges
) -> dict[str, set[str]]:
    """Every folder an environment index lists, at the base or the head, has
    an owner at the head; a folder whose owner moved (another path, another
    target, no model) is gone at the head, with its index entry
    (docs/ARCHITECTURE.md, "Kubernetes"). Returns, per index, the entries
    that may therefore be removed."""
    from releasectl.render import kubernetes as r

    owned = {folder for m in deploy.head.values() if (folder := r.folder_of(m)) is not None}
    listed = {rev: _index_folders(git, rev) for rev in (report.base, report.head)}
    orphans: dict[str, set[str]] = {}
    for index, entry, folder in listed[report.base] | listed[report.head]:
        if folder not in owned:
            orphans.setdefault(index, set()).add(entry)
            if (index, entry, folder) in listed[report.head]:
                problem = f"{index} still lists {folder}, which no model renders"
            elif g.tree_id(git, report.head, folder) is not None:
                problem = f"{folder} is left in place, but no model renders there any more"
            else:
                continue
            report.add(
                "deploy",
                "owner moved",
                False,
                f"{problem}: remove the folder and its index entry in the same pull request",
                Refused,
            )
    return orphans


def _index_folders(git: g.Git, rev: str) -> set[tuple[str, str, str]]:
    """(index, entry, folder) for every folder an environment index lists at `rev`."""
    from releasectl.render import kubernetes as r

    files = [e.partition("\t")[2] for e in g.tree_entries(git, rev, "deploy")]
    indexes = [f for f in files if f.count("/") == 2 and f.endswith("/" + r.KUSTOMIZATION)]
    out: set[tuple[str, str, str]] = set()
    for index, text in zip(
        indexes, g.read_blobs(git, [f"{rev}:{i}" for i in indexes]), strict=True
    ):
        try:
            entries = r.index_entries(text or "")
        except ReleasectlError:
            continue  # the index check reports a broken index
        parent = index.rpartition("/")[0]
        out |= {(index, e, f"{parent}/{e}".rstrip("/")) for e in entries}
    return out


def _check_deploy_folder(
    git: g.Git, report: Report, deploy: DeployChanges, orphans: dict[str, set[str]]
) -> None:
    from releasectl.serving.kubernetes.owners import index_problem

    strays, indexes = deploy.strays, deploy.indexes
    if deploy.overlaps:
        report.add("deploy", "folders", False, "; ".join(deploy.overlaps), Refused)
    if strays:
        report.add(
            "deploy",
            "owned",
            False,
            f"{', '.join(strays[:3])} {'is' if len(strays) == 1 else 'are'} in no model's "
            "rendered folder: only `releasectl release`, `revert` and `render` write deploy/",
            Refused,
        )
    for path in indexes:
        try:
            problem = index_problem(
                git,
                report.base,
                report.head,
                path,
                deploy.head,
                may_remove=orphans.get(path, set()),
            )
        except ReleasectlError as exc:
            problem = f"{path}: {exc.message}"
        report.add(
            "deploy",
            "index",
            problem is None,
            problem or f"{path} lists the environment's kubernetes models",
            Refused,
        )


def _check_namespaces(report: Report, deploy: DeployChanges) -> None:
    """Two models that would render one Namespace into one index break the sync of
    every model there (docs/ARCHITECTURE.md, "Kubernetes")."""
    from releasectl.render.rules import shared_namespaces

    for models, problem in shared_namespaces(deploy.head):
        if set(models) & set(report.models):
            report.add("deploy", "namespace", False, problem, BadInput)


def _check_render_only(git: g.Git, report: Report, model: str) -> None:
    """Only the model's rendered folder changed: it must still be exactly
    what its unchanged manifest renders to (a hand edit is refused)."""
    path = manifest_path(model)
    try:
        manifest = mf.load(g.read_blob(git, report.head, path) or "", path, model=model)
    except ReleasectlError as exc:
        report.add(model, "manifest", False, exc.message, BadInput)
        return
    detail = f"unchanged at {manifest.version}; its rendered folder changed"
    report.add(model, "manifest", True, detail)
    _check_rendered(git, report, model, manifest)


def _check_commits(git: g.Git, report: Report) -> None:
    commits = git.out("rev-list", f"{report.base}..{report.head}").split()
    if not commits:
        report.add("commits", "signed", True, "no new commits")
        return
    trust = trust_root(git, report.base)  # the base's signers, not the PR's
    verdicts = commit_verdicts(git, trust, commits)
    bad = [f"{c[:12]} ({verdicts[c].detail})" for c in commits if not verdicts[c].ok]
    if bad:
        report.add(
            "commits",
            "signed",
            False,
            "not signed by an allowed signer: " + ", ".join(bad),
            Refused,
        )
    else:
        report.add("commits", "signed", True, f"{len(commits)} commit(s) signed by allowed signers")


def _check_model(git: g.Git, report: Report, model: str, *, build: bool) -> None:
    path = manifest_path(model)
    try:
        text = g.read_blob(git, report.head, path)
        base_text = g.read_blob(git, report.base, path)
    except ReleasectlError as exc:  # not UTF-8: reported, like any bad manifest
        report.add(model, "manifest", False, exc.message, type(exc))
        return
    if text is None:
        gone = base_text is not None
        report.add(
            model,
            "manifest",
            not gone,
            "the model was removed" if gone else "no release.yaml",
            Refused if gone else BadInput,
        )
        return
    try:
        document = mf.parse_document(text, path)
        manifest = mf.validate(document, path, model=model)
        mf.refuse_old_spelling(manifest)  # a pull request writes the current form
    except ReleasectlError as exc:
        report.add(model, "manifest", False, exc.message, BadInput)
        return
    report.add(model, "manifest", True, f"valid; model {model}, version {manifest.version}")
    analysis = document.get("analysis") if isinstance(document, dict) else None
    report.add(
        model,
        "analysis",
        bool(analysis),
        "thresholds present"
        if analysis
        else "no analysis block: write the thresholds the release is watched with",
        BadInput,
    )
    _check_history(git, report, model, manifest)
    if base_text is None:
        report.add(model, "version", True, f"new model at {manifest.version}")
    else:
        try:
            before = mf.load(base_text, path, model=model)
        except ReleasectlError:
            before = None
        if before is not None:
            step = Succession.between(before, manifest)
            report.add(
                model,
                "version",
                step.version_rises,
                f"{before.version} -> {manifest.version}"
                + ("" if step.version_rises else ": the version must rise"),
                Refused,
            )
            report.add(
                model,
                "serial",
                step.serial_follows,
                f"{before.serial} -> {manifest.serial}"
                + ("" if step.serial_follows else f": must be {step.expected_serial}"),
                Refused,
            )
    _check_rendered(git, report, model, manifest)
    if build:
        _check_build(git, report, model, manifest)


def _check_rendered(git: g.Git, report: Report, model: str, manifest: mf.Manifest) -> None:
    """A kubernetes model's rendered folder is what its manifest renders to
    (docs/ARCHITECTURE.md, "Kubernetes")."""
    from releasectl.render.desired import committed_differences
    from releasectl.render.rules import require_prometheus, warnings

    if manifest.deploy.kubernetes is None:
        return
    try:
        require_prometheus(manifest)
        report.add(model, "analysis source", True, "prometheus: the bake judges the cluster")
    except ReleasectlError as exc:
        report.add(model, "analysis source", False, exc.line(), type(exc))
    for what, warning in warnings(manifest):
        report.warn(model, what, warning)
    try:
        wrong = committed_differences(git, manifest, report.head)
    except ReleasectlError as exc:
        report.add(model, "rendered", False, exc.line(), type(exc))
        return
    detail = (
        f"differs from the manifest: {', '.join(wrong[:3])}; run `releasectl render {model}` "
        "and commit"
        if wrong
        else "the folder is what the manifest renders to"
    )
    report.add(model, "rendered", not wrong, detail, BadInput)


def _check_history(git: g.Git, report: Report, model: str, manifest: mf.Manifest) -> None:
    """What only the base's registry knows: a version is released once, and a
    rollback record is written by `releasectl revert`, never by a pull request
    (docs/ARCHITECTURE.md, "Revert")."""
    if manifest.rollback is not None:
        report.add(
            model,
            "rollback",
            False,
            f"declares a rollback record ({manifest.rollback.from_} -> {manifest.rollback.to}): "
            "a pull request never writes one; `releasectl revert` does",
            Refused,
        )
    history = history_of(git, model, report.base)
    taken = history.get(manifest.version)  # a name taken, even by a tag that does not verify
    # Only releases that verify raise the bar: a hand-made tag blocks no pull request.
    newest = highest_verified(git, trust_root(git, report.base), history)
    if taken is not None:
        state = "released and rejected" if taken.rejected is not None else "released"
        report.add(
            model,
            "version",
            False,
            f"{manifest.version} is already {state} ({taken.tag.name}): a version is released once",
            Refused,
        )
    elif newest is not None and parse_version(manifest.version) < newest:
        report.add(
            model,
            "version",
            False,
            f"{manifest.version} is lower than the newest release {newest}: versions only rise",
            Refused,
        )


def _check_build(git: g.Git, report: Report, model: str, manifest: mf.Manifest) -> None:
    store = store_for(git)
    with tempfile.TemporaryDirectory(prefix="releasectl-check-") as tmp:
        try:
            built = build_sources(git, manifest, report.head, Path(tmp), store, stranded=stranded)
        except ReleasectlError as exc:
            report.add(model, "bundle", False, f"does not build: {exc.message}", type(exc))
            return
    digest = built.digest
    report.digests[model] = digest
    pinned = manifest.bundle.digest
    if pinned is not None and pinned != digest:
        why = explain_mismatch(built, recorded_files(store, pinned))
        version = manifest.version
        report.add(
            model,
            "bundle",
            False,
            f"builds to {digest}, but pins {pinned}{why}; run `releasectl propose {model} "
            f"{version}` or `releasectl release {model} {version} --dry-run` to print the "
            "digest this change builds to",
            Refused,
        )
    else:
        report.add(model, "bundle", True, f"builds: {digest}")
