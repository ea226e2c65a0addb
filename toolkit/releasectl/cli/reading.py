"""list, history, show, verify: the commands that only read."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from releasectl.cli import JsonOption, ModelArg, bare_version, ci_summary, emit, repo, run, say


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


_HISTORY_HEADER = ["version", "mark", "commit", "date", "signer", "verified"]


def _history_cells(row: dict[str, Any]) -> list[str]:
    verified = "yes" if row["verified"] else f"NO: {row['problem']}"
    if row["kind"] == "revert":
        what = f"revert {row['from']} -> {row['to']}: {row['reason']}"
        return [what, "", str(row["commit"])[:12], str(row["at"]), str(row["by"]), verified]
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
    ]


def _warn_ignored(ignored: list[str]) -> None:
    """Marks that do not verify are never obeyed: say so once, on stderr."""
    if ignored:
        typer.echo(
            f"releasectl: ignored {len(ignored)} mark(s) that do not verify: " + "; ".join(ignored),
            err=True,
        )


def _broken_row(model: str, exc: Any) -> dict[str, Any]:
    """A model `list` cannot read: its row carries the error, not the whole listing."""
    return {
        "model": model,
        "version": None,
        "serial": None,
        "last_stable": None,
        "reverted": None,
        "error": {"code": exc.code, "message": exc.message, "hint": exc.hint},
    }


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_(json: JsonOption = False) -> None:
        """The models in the registry, with their current and last stable version.
        A model that cannot be read (a broken release.yaml) is a row with its error;
        every model is listed, then the exit code is that error's (2 for bad input)."""

        def body() -> int:
            from releasectl.errors import ReleasectlError
            from releasectl.registry import history as reg
            from releasectl.registry.verified import last_stable
            from releasectl.signing import trust_root

            git = repo()
            trust = trust_root(git)
            rows: list[dict[str, Any]] = []
            for model in reg.list_models(git):
                try:
                    manifest, _ = reg.current(git, model)
                    stable, _ = last_stable(git, trust, reg.history(git, model))
                except ReleasectlError as exc:
                    rows.append(_broken_row(model, exc))
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
            broken = [r for r in rows if "error" in r]
            for r in broken:
                error = r["error"]
                hint = f" ({error['hint']})" if error["hint"] else ""
                typer.echo(f"releasectl: {r['model']}: {error['message']}{hint}", err=True)
            code = max((int(r["error"]["code"]) for r in broken), default=0)
            if json:
                emit(rows)
                return code
            if not rows:
                say("no models yet: releasectl new MODEL")
                return code
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
                    ["model", "version", "serial", "last stable", ""],
                )
            )
            return code

        run(body, json_mode=json)

    @app.command()
    def history(model: ModelArg, json: JsonOption = False) -> None:
        """A model's releases and reverts, newest first (branch order), with what verifies."""

        def body() -> None:
            from releasectl.registry import history as reg

            git = repo()
            h = reg.history(git, model)

            from releasectl.config import home
            from releasectl.registry.verified import history_report
            from releasectl.serving.local.peek import live
            from releasectl.signing import trust_root

            report = history_report(git, trust_root(git), h, live(home(), model))
            if json:
                emit(report.rows)
            elif not report.rows:
                say(f"{model} has no releases yet")
            else:
                say(_table([_history_cells(row) for row in report.rows], _HISTORY_HEADER))
            _warn_ignored(report.ignored)

        run(body, json_mode=json)

    @app.command()
    def show(
        model: ModelArg,
        version: Annotated[
            str | None,
            typer.Option("--version", help="Show this release instead.", callback=bare_version),
        ] = None,
        json: JsonOption = False,
    ) -> None:
        """The model's current release state on this branch (or one release's)."""

        def body() -> None:
            from releasectl import git as g
            from releasectl.registry import history as reg

            git = repo()
            reg.prefetch(git, model)

            from releasectl.errors import BadInput
            from releasectl.names import check_version, tag_name

            rev = "HEAD"
            if version is not None:
                check_version(version)
                rev = f"refs/tags/{tag_name('release', model, version)}"
                if g.rev_parse(git, rev) is None:
                    raise BadInput(f"{model} has no release {version}")
            manifest, _ = reg.current(git, model, rev)
            h = reg.history(git, model)

            from releasectl.config import home
            from releasectl.registry.verified import ignored_marks, last_stable, verify_history
            from releasectl.serving.local.peek import live
            from releasectl.signing import trust_root

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
                "rollback": (
                    manifest.rollback.model_dump(mode="json", by_alias=True)
                    if manifest.rollback
                    else None
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
                marks.append("UNVERIFIED: " + str(verdict.release.problem if verdict else ""))
            say(
                f"{model} {manifest.version} (serial {manifest.serial})"
                + "".join(f" [{m}]" for m in marks)
            )
            say(f"  last stable: {data['last_stable'] or '-'}")
            if data["live"]:
                say(f"  live on the local target: {data['live']['version']}")
            if manifest.rollback:
                rb = manifest.rollback
                say(f"  reverted from {rb.from_} at {rb.at.isoformat()} by {rb.by}: {rb.reason}")
            say(f"  bento: {manifest.bundle.bento}  digest: {manifest.bundle.digest or '-'}")

        run(body, json_mode=json)

    @app.command()
    def verify(
        model: ModelArg,
        version: Annotated[
            str | None,
            typer.Argument(
                help="Release to verify (default: the current one).", callback=bare_version
            ),
        ] = None,
        json: JsonOption = False,
    ) -> None:
        """Strictly verify a release: tag, signer, commit, manifest, marks."""

        def body() -> int:
            from releasectl.registry import history as reg

            git = repo()
            reg.prefetch(git, model)

            from releasectl.errors import BadInput
            from releasectl.signing import trust_root

            wanted = version or reg.current(git, model)[0].version
            h = reg.history(git, model)
            release = h.get(wanted)
            if release is None:
                raise BadInput(f"{model} has no release {wanted}")
            checks = reg.verify_release(git, trust_root(git), release)
            ok = all(c.ok for c in checks)
            ci_summary(
                f"{'✅' if ok else '❌'} {release.tag.name}: "
                + "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok or ok)
            )
            if json:
                emit(
                    {
                        "model": model,
                        "version": wanted,
                        "ok": ok,
                        "checks": [
                            {"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks
                        ],
                    }
                )
            else:
                for c in checks:
                    say(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
                say(f"{model} {wanted}: " + ("verified" if ok else "does NOT verify"))
            return 0 if ok else 3

        run(body, json_mode=json)
