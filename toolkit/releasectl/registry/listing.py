"""What the reading commands answer, as typed results: `list` (every model and
its state), `show` (one model's release state, or one release's) and `verify`
(every check of one release). Each result has one serialisation, `to_json`,
which is the command's `--json` document; the text the command line prints
reads the same fields (docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from releasectl import git as g
from releasectl.errors import BadInput, ReleasectlError
from releasectl.names import ModelVersion, tag_name
from releasectl.registry.history import current, history_of, list_models, prefetch, verify_release
from releasectl.registry.verified import (
    UNSIGNED_TRAILER,
    ignored_marks,
    last_stable,
    verify_history,
)
from releasectl.verdict import Verdict
from releasectl.view import trust_root

if TYPE_CHECKING:
    from releasectl.manifest.schema import Bundle, Deploy, Rollback


@dataclass(frozen=True)
class ModelRow:
    """One model of `list`: its current state, or the error that stopped reading it."""

    model: str
    version: str | None = None
    serial: int | None = None
    last_stable: str | None = None
    reverted: bool | None = None
    error: ReleasectlError | None = None  # the model cannot be read (a broken release.yaml)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "serial": self.serial,
            "last_stable": self.last_stable,
            "reverted": self.reverted,
        }
        if self.error is not None:
            doc["error"] = self.error.to_json()
        return doc


@dataclass(frozen=True)
class Listing:
    """`list`: every model of the registry, a broken one as a row with its error."""

    rows: list[ModelRow]

    @property
    def broken(self) -> list[ModelRow]:
        return [row for row in self.rows if row.error is not None]

    @property
    def worst(self) -> ModelRow | None:
        """The broken row whose error has the highest exit code (the first of
        them): the command's failure, once every model is listed."""
        broken = self.broken
        return max(broken, key=lambda row: row.error.code if row.error else 0) if broken else None

    def to_json(self) -> list[dict[str, Any]]:
        return [row.to_json() for row in self.rows]


def listing(git: g.Git) -> Listing:
    """Every model on the branch: its current version and serial, its last
    stable release (verified), whether it is reverted; a model that cannot be
    read is a row carrying its error, and the others are still listed."""
    trust = trust_root(git)
    rows: list[ModelRow] = []
    for model in list_models(git):
        try:
            manifest, _ = current(git, model)
            stable, _ = last_stable(git, trust, history_of(git, model))
        except ReleasectlError as exc:
            rows.append(ModelRow(model, error=exc))
            continue
        rows.append(
            ModelRow(
                model,
                manifest.version,
                manifest.serial,
                stable.version if stable else None,
                manifest.rollback is not None,
            )
        )
    return Listing(rows)


@dataclass(frozen=True)
class ShowReport:
    """`show`: a model's release state on this branch, or one release's."""

    model: str
    version: str
    serial: int
    commit: str | None  # the commit shown (HEAD's, or the release tag's)
    released: bool  # the version shown is a release of the model
    verified: bool  # that release verifies
    problem: str | None  # why it does not, when it is a release that does not
    stable: bool  # a verified stable mark
    rejected: bool  # a verified rejected mark
    last_stable: str | None
    live: dict[str, object] | None  # what the local target serves, when it knows
    ignored: list[str]  # "tag: why" for every mark that exists but does not verify
    unsigned_sources: list[str]  # the source commits the release was allowed over
    rollback: Rollback | None
    bundle: Bundle
    deploy: Deploy

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "serial": self.serial,
            "commit": self.commit,
            "released": self.released,
            "verified": self.verified,
            "stable": self.stable,
            "rejected": self.rejected,
            "last_stable": self.last_stable,
            "live": self.live,
            "ignored": self.ignored,
            "unsigned_sources": self.unsigned_sources,
            "rollback": (
                self.rollback.model_dump(mode="json", by_alias=True) if self.rollback else None
            ),
            "bundle": self.bundle.model_dump(mode="json"),
            "deploy": self.deploy.model_dump(mode="json"),
        }


def show(git: g.Git, model: str, version: str | None, live: dict[str, object] | None) -> ShowReport:
    """The model's state at HEAD, or at the release `version`'s tag; `live` is
    what the local target serves (the caller's: the target is a layer above)."""
    prefetch(git, model)
    rev = "HEAD"
    if version is not None:
        ModelVersion.parse(version)
        rev = f"refs/tags/{tag_name('release', model, version)}"
        if g.rev_parse(git, rev) is None:
            raise BadInput(f"{model} has no release {version}")
    manifest, _ = current(git, model, rev)
    h = history_of(git, model)
    trust = trust_root(git)
    stable, passed_over = last_stable(git, trust, h)
    this = h.get(manifest.version)
    verdict = verify_history(git, trust, h, [this])[this.version] if this else None
    judged = [*passed_over, *([(this, verdict)] if this and verdict else [])]
    return ShowReport(
        model=model,
        version=manifest.version,
        serial=manifest.serial,
        commit=g.rev_parse(git, rev),
        released=this is not None,
        verified=bool(verdict and verdict.release.ok),
        problem=verdict.release.problem if verdict else None,
        stable=bool(verdict and verdict.stable and verdict.stable.ok),
        rejected=bool(verdict and verdict.rejected and verdict.rejected.ok),
        last_stable=stable.version if stable else None,
        live=live,
        ignored=ignored_marks(judged),
        unsigned_sources=_unsigned_sources(git, this.commit if this else None),
        rollback=manifest.rollback,
        bundle=manifest.bundle,
        deploy=manifest.deploy,
    )


def _unsigned_sources(git: g.Git, commit: str | None) -> list[str]:
    """The source commits a release was allowed over (its commit's trailer)."""
    if commit is None:
        return []
    values = g.trailers(git, commit).get(UNSIGNED_TRAILER, [])
    return [c for value in values for c in value.split()]


@dataclass(frozen=True)
class VerifyReport:
    """`verify`: every check of one release, a verdict each."""

    model: str
    version: str
    tag: str  # the release tag's name
    checks: list[Verdict]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[Verdict]:
        return [check for check in self.checks if not check.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "ok": self.ok,
            "checks": [
                {"name": check.subject, "ok": check.ok, "detail": check.detail}
                for check in self.checks
            ],
        }


def verify(git: g.Git, model: str, version: str | None, *, image: bool) -> VerifyReport:
    """Strictly verify the release `version` (default: the current one): its
    tag, signer, commit, manifest and marks; with `image`, once all of them
    hold, the registry's word on the image it pins."""
    prefetch(git, model)
    wanted = version or current(git, model)[0].version
    release = history_of(git, model).get(wanted)
    if release is None:
        raise BadInput(f"{model} has no release {wanted}")
    checks = verify_release(git, trust_root(git), release)
    if image and all(check.ok for check in checks):
        from releasectl.bundles.image import verify_release_image

        checks += verify_release_image(git, model, release.commit)
    return VerifyReport(model, wanted, release.tag.name, checks)
