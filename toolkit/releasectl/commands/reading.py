"""list, history, show, verify: the commands that only read."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..cli import JsonOption, ModelArg, ci_summary, emit, repo, run, say


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_(json: JsonOption = False) -> None:
        """The models in the registry, with their current and last stable version."""

        def body() -> None:
            from .. import registry as reg

            git = repo()
            rows = []
            for model in reg.list_models(git):
                manifest, _ = reg.current(git, model)
                stable = reg.history(git, model).last_stable()
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
                            str(r["version"]),
                            str(r["serial"]),
                            str(r["last_stable"] or "-"),
                            "reverted" if r["reverted"] else "",
                        ]
                        for r in rows
                    ],
                    ["model", "version", "serial", "last stable", ""],
                )
            )

        run(body, json_mode=json)

    @app.command()
    def history(model: ModelArg, json: JsonOption = False) -> None:
        """A model's releases, newest first (branch order), with their marks."""

        def body() -> None:
            from .. import registry as reg

            h = reg.history(repo(), model)
            rows = [r.summary() for r in h.releases]
            if json:
                emit(rows)
                return
            if not rows:
                say(f"{model} has no releases yet")
                return
            say(
                _table(
                    [
                        [
                            str(r["version"]),
                            "rejected" if r["rejected"] else ("stable" if r["stable"] else ""),
                            str(r["commit"])[:12],
                            str(r["date"] or ""),
                            str(r["signer"] or ""),
                        ]
                        for r in rows
                    ],
                    ["version", "mark", "commit", "date", "signer"],
                )
            )

        run(body, json_mode=json)

    @app.command()
    def show(
        model: ModelArg,
        version: Annotated[
            str | None, typer.Option("--version", help="Show this release instead.")
        ] = None,
        json: JsonOption = False,
    ) -> None:
        """The model's current release state on this branch (or one release's)."""

        def body() -> None:
            from .. import git as g
            from .. import registry as reg

            git = repo()
            reg.prefetch(git, model)

            from ..errors import BadInput
            from ..names import check_version, tag_name

            rev = "HEAD"
            if version is not None:
                check_version(version)
                rev = f"refs/tags/{tag_name('release', model, version)}"
                if g.rev_parse(git, rev) is None:
                    raise BadInput(f"{model} has no release {version}")
            manifest, _ = reg.current(git, model, rev)
            h = reg.history(git, model)
            stable = h.last_stable()
            this = h.get(manifest.version)
            data: dict[str, Any] = {
                "model": model,
                "version": manifest.version,
                "serial": manifest.serial,
                "commit": g.rev_parse(git, rev),
                "released": this is not None,
                "stable": bool(this and this.stable),
                "rejected": bool(this and this.rejected),
                "last_stable": stable.version if stable else None,
                "rollback": (
                    manifest.rollback.model_dump(mode="json", by_alias=True)
                    if manifest.rollback
                    else None
                ),
                "bundle": manifest.bundle.model_dump(mode="json"),
                "deploy": manifest.deploy.model_dump(mode="json"),
            }
            if json:
                emit(data)
                return
            marks = [k for k in ("stable", "rejected") if data[k]]
            say(
                f"{model} {manifest.version} (serial {manifest.serial})"
                + "".join(f" [{m}]" for m in marks)
            )
            say(f"  last stable: {data['last_stable'] or '-'}")
            if manifest.rollback:
                rb = manifest.rollback
                say(f"  reverted from {rb.from_} at {rb.at.isoformat()} by {rb.by}: {rb.reason}")
            say(f"  bento: {manifest.bundle.bento}  digest: {manifest.bundle.digest or '-'}")

        run(body, json_mode=json)

    @app.command()
    def verify(
        model: ModelArg,
        version: Annotated[
            str | None, typer.Argument(help="Release to verify (default: the current one).")
        ] = None,
        json: JsonOption = False,
    ) -> None:
        """Strictly verify a release: tag, signer, commit, manifest, marks."""

        def body() -> int:
            from .. import registry as reg

            git = repo()
            reg.prefetch(git, model)

            from ..errors import BadInput
            from ..signing import trust_root

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
