"""list, history, show, verify: the commands that only read
(docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
from releasectl.errors import Refused, for_code

if TYPE_CHECKING:
    from releasectl.registry.listing import Listing, ModelRow
    from releasectl.registry.verified import ReleaseRow, RevertRow
    from releasectl.verdict import Verdict

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


def _verified_cell(verdict: Verdict) -> str:
    return "yes" if verdict.ok else _cut(f"NO: {verdict.problem}")


def _history_cells(row: ReleaseRow | RevertRow) -> list[str]:
    from releasectl.registry.verified import RevertRow

    if isinstance(row, RevertRow):
        # The restored version in VERSION, the reason (free text) in NOTE, cut to fit.
        r = row.revert
        cells = [r.to_version, f"revert from {r.from_version}", r.commit[:12], r.at, r.by]
        return [*cells, _verified_cell(row.verdict), _cut(r.reason)]
    release = row.release
    mark = "rejected" if row.rejected else ("stable" if row.stable else "")
    if row.live:
        mark = f"{mark} live".strip()
    return [
        release.version,
        mark,
        release.commit[:12],
        release.tag.date or "",
        release.tag.tagger or "",
        _verified_cell(row.verdict.release),
        "",
    ]


def _warn_ignored(ignored: list[str]) -> None:
    """Marks that do not verify are never obeyed: say so once, on stderr."""
    if ignored:
        warn(f"ignored {len(ignored)} mark(s) that do not verify: " + "; ".join(ignored))


def _unreadable(listing: Listing) -> None:
    """After the listing, the models it could not read: one stderr line each;
    the worst (the highest exit code) is the command's failure."""
    worst = listing.worst
    if worst is None or worst.error is None:
        return
    for row in listing.broken:
        if row is not worst and row.error is not None:
            warn(f"{row.model}: {row.error.line()}")
    exc = worst.error
    # With --json, the rows (each carries its error) are the document.
    raise for_code(exc.code)(f"{worst.model}: {exc.message}", exc.hint, report=listing.to_json())


def _listing_cells(row: ModelRow) -> list[str]:
    if row.error is not None:
        return [row.model, "-", "-", "-", f"ERROR: {row.error.message}"]
    return [
        row.model,
        row.version or "-",
        str(row.serial if row.serial is not None else "-"),
        row.last_stable or "-",
        "reverted" if row.reverted else "",
    ]


@app.command("list")
@funnel()
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """The models in the registry, with their current and last stable version.
    A model that cannot be read (a broken release.yaml) is a row with its error;
    every model is listed, then the exit code is that error's (2 for bad input)."""
    from releasectl.registry.listing import listing as read_listing

    found = read_listing(repo(ctx))
    if json:
        _unreadable(found)
        emit(found.to_json())
        return
    if not found.rows:
        say("no models yet: releasectl new MODEL")
        return
    say(
        _table(
            [_listing_cells(row) for row in found.rows],
            ["model", "version", "serial", "last stable", "note"],
        )
    )
    _unreadable(found)


@app.command()
@funnel()
def history(ctx: typer.Context, model: ModelArg, json: JsonOption = False) -> None:
    """A model's releases and reverts, newest first (branch order), with what verifies."""
    from releasectl.registry.history import history_of

    git = repo(ctx)
    h = history_of(git, model)

    from releasectl.config import home
    from releasectl.registry.verified import history_report
    from releasectl.serving.local.peek import live
    from releasectl.view import trust_root

    report = history_report(git, trust_root(git), h, live(home(), model))
    if json:
        emit(report.to_json())
    elif not report.rows:
        say(f"{model} has no releases yet")
    else:
        say(_table([_history_cells(row) for row in report.rows], _HISTORY_HEADER))
    _warn_ignored(report.ignored)


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
    from releasectl.config import home
    from releasectl.registry.listing import show as read_show
    from releasectl.serving.local.peek import live

    report = read_show(repo(ctx), model, version, live(home(), model))
    _warn_ignored(report.ignored)
    if json:
        emit(report.to_json())
        return
    marks = [k for k, on in (("stable", report.stable), ("rejected", report.rejected)) if on]
    if report.released and not report.verified:
        marks.append("UNVERIFIED: " + shown(report.problem or ""))
    say(f"{model} {report.version} (serial {report.serial})" + "".join(f" [{m}]" for m in marks))
    say(f"  last stable: {report.last_stable or '-'}")
    if report.live:
        say(f"  live on the local target: {report.live['version']}")
    if report.rollback:
        rb = report.rollback
        say(
            f"  reverted from {shown(rb.from_)} at {rb.at.isoformat()} by {shown(rb.by)}: "
            f"{shown(rb.reason)}"
        )
    bento, digest = shown(report.bundle.bento), shown(report.bundle.digest or "-")
    say(f"  bento: {bento}  digest: {digest}")
    if report.bundle.image is not None:
        say(f"  image: {shown(report.bundle.image)}")
    if report.unsigned_sources:
        say("  released over unsigned source commits: " + " ".join(report.unsigned_sources))


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
    from releasectl.registry.listing import verify as run_verify

    report = run_verify(repo(ctx), model, version, image=image)
    doc = report.to_json()
    if not json:
        for c in report.checks:
            say(f"{'ok  ' if c.ok else 'FAIL'}  {shown(c.subject)}: {shown(c.detail)}")
        say(f"{model} {report.version}: " + ("verified" if report.ok else "does NOT verify"))
    if not report.ok:
        failed = "; ".join(f"{c.subject}: {c.detail}" for c in report.failed)
        raise Refused(f"{report.tag} does not verify: {failed}", report=doc)
    ci_summary(f"✅ {report.tag}: " + "; ".join(f"{c.subject}: {c.detail}" for c in report.checks))
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
