"""list, history, show, verify: the commands that only read
(docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

import releasectl.cli.completion as completion
from releasectl.cli.output import (
    JsonOption,
    ModelArg,
    bare_version,
    ci_summary,
    emit,
    funnel,
    repo,
    say,
    shown,
    warn,
)
from releasectl.errors import BadInput, Refused, ReleasectlError, for_code

app = typer.Typer()


# The widest a free-text cell is shown in a table; the whole text is in --json.
NOTE_WIDTH = 48


def _cut(text: str, width: int = NOTE_WIDTH) -> str:
    """Text that fits `width` columns: cut, with an ellipsis, when longer."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def _table(rows: list[list[str]], header: list[str]) -> str:
    """Columns as wide as their widest cell (free text is cut first, see `_cut`),
    every column headed, trailing blanks dropped."""
    rows = [[shown(cell) for cell in row] for row in rows]  # each cell: git's or a manifest's
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


_HISTORY_HEADER = ["version", "mark", "commit", "date", "signer", "verified", "note"]


def _history_cells(row: dict[str, Any]) -> list[str]:
    verified = "yes" if row["verified"] else _cut(f"NO: {row['problem']}")
    if row["kind"] == "revert":
        # The restored version in VERSION, the reason (free text) in NOTE, cut to fit.
        mark = f"revert from {row['from']}"
        if row.get("live"):
            mark += " live"
        cells = [str(row["to"]), mark, str(row["commit"])[:12], str(row["at"]), str(row["by"])]
        return [*cells, verified, _cut(str(row["reason"]))]
    mark = "rejected" if row["rejected"] else ("stable" if row["stable"] else "")
    if row["live"]:
        mark = f"{mark} live".strip()
    signer = str(row["signer"] or "")
    return [
        str(row["version"]),
        mark,
        str(row["commit"])[:12],
        str(row["date"] or ""),
        signer,
        verified,
        "",
    ]


def _warn_ignored(ignored: list[str]) -> None:
    """Marks that do not verify are never obeyed: say so once, on stderr."""
    if ignored:
        warn(f"ignored {len(ignored)} mark(s) that do not verify: " + "; ".join(ignored))


def _broken_row(model: str, exc: ReleasectlError) -> dict[str, Any]:
    """A model `list` cannot read: its row carries the error, not the whole listing."""
    return {
        "model": model,
        "version": None,
        "serial": None,
        "last_stable": None,
        "reverted": None,
        "error": exc.to_json(),
    }


def _unreadable(broken: list[tuple[str, ReleasectlError]], rows: list[dict[str, Any]]) -> None:
    """After the listing, the models it could not read: one stderr line each;
    the worst (the highest exit code) is the command's failure."""
    if not broken:
        return
    worst = max(broken, key=lambda found: found[1].code)
    for model, exc in broken:
        if (model, exc) != worst:
            warn(f"{model}: {exc.line()}")
    model, exc = worst
    # With --json, the rows (each carries its error) are the document.
    raise for_code(exc.code)(f"{model}: {exc.message}", exc.hint, report=rows)


@app.command("list")
@funnel()
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """The models in the registry, with their current and last stable version.
    A model that cannot be read (a broken release.yaml) is a row with its error;
    every model is listed, then the exit code is that error's (2 for bad input)."""
    from releasectl.registry import history as reg
    from releasectl.registry.verified import last_stable
    from releasectl.view import trust_root

    git = repo(ctx)
    trust = trust_root(git)
    rows: list[dict[str, Any]] = []
    broken: list[tuple[str, ReleasectlError]] = []
    for model in reg.list_models(git):
        try:
            manifest, _ = reg.current(git, model)
            stable, _ = last_stable(git, trust, reg.history(git, model))
        except ReleasectlError as exc:
            rows.append(_broken_row(model, exc))
            broken.append((model, exc))
            continue
        rows.append(
            {
                "model": model,
                "version": manifest.version,
                "serial": manifest.serial,
                "last_stable": stable.version if stable else None,
                "reverted": manifest.rollback is not None,
            }
        )
    if json:
        _unreadable(broken, rows)
        emit(rows)
        return
    if not rows:
        say("no models yet: releasectl new MODEL")
        return
    say(
        _table(
            [
                [
                    str(r["model"]),
                    str(r["version"] or "-"),
                    str(r["serial"] if r["serial"] is not None else "-"),
                    str(r["last_stable"] or "-"),
                    "reverted" if r["reverted"] else "",
                ]
                if "error" not in r
                else [str(r["model"]), "-", "-", "-", f"ERROR: {r['error']['message']}"]
                for r in rows
            ],
            ["model", "version", "serial", "last stable", "note"],
        )
    )
    _unreadable(broken, rows)


@app.command()
@funnel()
def history(ctx: typer.Context, model: ModelArg, json: JsonOption = False) -> None:
    """A model's releases and reverts, newest first (branch order), with what verifies."""
    from releasectl.registry import history as reg

    git = repo(ctx)
    h = reg.history(git, model)

    from releasectl.config import home
    from releasectl.registry.verified import history_report
    from releasectl.serving.local.peek import live
    from releasectl.view import trust_root

    report = history_report(git, trust_root(git), h, live(home(), model))
    if json:
        emit(report.rows)
    elif not report.rows:
        say(f"{model} has no releases yet")
    else:
        say(_table([_history_cells(row) for row in report.rows], _HISTORY_HEADER))
    _warn_ignored(report.ignored)


def _unsigned_sources(git: Any, commit: str | None) -> list[str]:
    """The source commits a release was allowed over (its commit's trailer)."""
    from releasectl import git as g
    from releasectl.registry.verified import UNSIGNED_TRAILER

    if commit is None:
        return []
    values = g.trailers(git, commit).get(UNSIGNED_TRAILER, [])
    return [c for value in values for c in value.split()]


@app.command()
@funnel()
def show(
    ctx: typer.Context,
    model: ModelArg,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Show this release instead.",
            callback=bare_version,
            autocompletion=completion.versions,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """The model's current release state on this branch (or one release's)."""
    from releasectl import git as g
    from releasectl.registry import history as reg

    git = repo(ctx)
    reg.prefetch(git, model)

    from releasectl.names import ModelVersion, tag_name

    rev = "HEAD"
    if version is not None:
        ModelVersion.parse(version)
        rev = f"refs/tags/{tag_name('release', model, version)}"
        if g.rev_parse(git, rev) is None:
            raise BadInput(f"{model} has no release {version}")
    manifest, _ = reg.current(git, model, rev)
    h = reg.history(git, model)

    from releasectl.config import home
    from releasectl.registry.verified import ignored_marks, last_stable, verify_history
    from releasectl.serving.local.peek import live
    from releasectl.view import trust_root

    trust = trust_root(git)
    stable, passed_over = last_stable(git, trust, h)
    this = h.get(manifest.version)
    verdict = verify_history(git, trust, h, [this])[this.version] if this else None
    judged = [*passed_over, *([(this, verdict)] if this and verdict else [])]
    ignored = ignored_marks(judged)
    data: dict[str, Any] = {
        "model": model,
        "version": manifest.version,
        "serial": manifest.serial,
        "commit": g.rev_parse(git, rev),
        "released": this is not None,
        "verified": bool(verdict and verdict.release.ok),
        "stable": bool(verdict and verdict.stable and verdict.stable.ok),
        "rejected": bool(verdict and verdict.rejected and verdict.rejected.ok),
        "last_stable": stable.version if stable else None,
        "live": live(home(), model),
        "ignored": ignored,
        "unsigned_sources": _unsigned_sources(git, this.commit if this else None),
        "rollback": (
            manifest.rollback.model_dump(mode="json", by_alias=True) if manifest.rollback else None
        ),
        "bundle": manifest.bundle.model_dump(mode="json"),
        "deploy": manifest.deploy.model_dump(mode="json"),
    }
    _warn_ignored(ignored)
    if json:
        emit(data)
        return
    marks = [k for k in ("stable", "rejected") if data[k]]
    if this is not None and not data["verified"]:
        marks.append("UNVERIFIED: " + shown(verdict.release.problem if verdict else ""))
    say(
        f"{model} {manifest.version} (serial {manifest.serial})" + "".join(f" [{m}]" for m in marks)
    )
    say(f"  last stable: {data['last_stable'] or '-'}")
    if data["live"]:
        say(f"  live on the local target: {data['live']['version']}")
    if manifest.rollback:
        rb = manifest.rollback
        say(
            f"  reverted from {shown(rb.from_)} at {rb.at.isoformat()} by {shown(rb.by)}: "
            f"{shown(rb.reason)}"
        )
    bento, digest = shown(manifest.bundle.bento), shown(manifest.bundle.digest or "-")
    say(f"  bento: {bento}  digest: {digest}")
    if manifest.bundle.image is not None:
        say(f"  image: {shown(manifest.bundle.image)}")
    if data["unsigned_sources"]:
        say("  released over unsigned source commits: " + " ".join(data["unsigned_sources"]))


@app.command()
@funnel()
def verify(
    ctx: typer.Context,
    model: ModelArg,
    version: Annotated[
        str | None,
        typer.Argument(
            help="Release to verify (default: the current one).",
            callback=bare_version,
            autocompletion=completion.versions,
        ),
    ] = None,
    image: Annotated[
        bool,
        typer.Option(
            "--image",
            help="Also ask the registry: a kubernetes model's pinned image exists by that "
            "digest and carries the release's bundle digest (CI).",
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Strictly verify a release: tag, signer, commit, manifest, marks."""
    from releasectl.registry import history as reg

    git = repo(ctx)
    reg.prefetch(git, model)

    from releasectl.view import trust_root

    wanted = version or reg.current(git, model)[0].version
    h = reg.history(git, model)
    release = h.get(wanted)
    if release is None:
        raise BadInput(f"{model} has no release {wanted}")
    checks = [
        {"name": c.subject, "ok": c.ok, "detail": c.detail}
        for c in reg.verify_release(git, trust_root(git), release)
    ]
    if image and all(c["ok"] for c in checks):
        from releasectl.bundles.image import verify_release_image

        checks += [
            {"name": c.subject, "ok": c.ok, "detail": c.detail}
            for c in verify_release_image(git, model, release.commit)
        ]
    ok = all(c["ok"] for c in checks)
    doc = {"model": model, "version": wanted, "ok": ok, "checks": checks}
    if not json:
        for c in checks:
            say(f"{'ok  ' if c['ok'] else 'FAIL'}  {shown(c['name'])}: {shown(c['detail'])}")
        say(f"{model} {wanted}: " + ("verified" if ok else "does NOT verify"))
    if not ok:
        failed = "; ".join(f"{c['name']}: {c['detail']}" for c in checks if not c["ok"])
        raise Refused(f"{release.tag.name} does not verify: {failed}", report=doc)
    ci_summary(
        f"✅ {release.tag.name}: " + "; ".join(f"{c['name']}: {c['detail']}" for c in checks)
    )
    if json:
        emit(doc)


@app.command()
@funnel()
def doctor(ctx: typer.Context, json: JsonOption = False) -> None:
    """Every registry ref on the remote that does not verify, and why, with the
    command an admin runs to remove it (exit 3 when there is one); and warnings
    about how the registry is set up."""
    from releasectl.registry.doctor import doctor as run_doctor
    from releasectl.view import trust_root

    git = repo(ctx)
    report = run_doctor(git, lambda tip: trust_root(git, tip))
    doc = report.to_json()
    for line in report.warnings:
        warn(f"warning: {line}")
    if not json:
        for f in report.findings:
            say(f"{shown(f.ref)}: {shown(f.problem)}")
            say(f"  fix: {shown(f.fix)}")
        say(
            f"{report.remote}/{report.branch}: {report.checked} registry tag(s) checked, "
            f"{len(report.findings)} ref(s) that do not verify"
        )
    if report.findings:
        first = report.findings[0]
        more = f" (and {len(report.findings) - 1} more)" if len(report.findings) > 1 else ""
        raise Refused(
            f"{first.ref} on {report.remote} does not verify: {first.problem}{more}",
            f"an admin removes it: `{first.fix}`",
            report=doc,
        )
    if json:
        emit(doc)
