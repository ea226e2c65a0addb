"""init, new, schema."""

from __future__ import annotations

from typing import Annotated

import typer

from ..cli import DryRunOption, JsonOption, emit, repo, run, say


def register(app: typer.Typer) -> None:
    @app.command()
    def init(dry_run: DryRunOption = False, json: JsonOption = False) -> None:
        """Set up this git repository as a registry (one signed commit)."""

        def body() -> None:
            from ..scaffold import init as do_init

            files, landed = do_init(repo(), dry_run=dry_run)
            if json:
                emit(
                    {
                        "created": sorted(files),
                        "commit": landed.commit if landed else None,
                        "dry_run": dry_run,
                    }
                )
            elif not files:
                say("already a registry: .releasectl/allowed_signers exists; nothing to do")
            elif dry_run:
                say("would create, in one signed commit:\n  " + "\n  ".join(sorted(files)))
            else:
                assert landed is not None and landed.commit
                say(f"registry ready at {landed.commit[:12]}: " + ", ".join(sorted(files)))
                say("next: releasectl new MODEL")

        run(body, json_mode=json)

    @app.command()
    def new(
        model: Annotated[str, typer.Argument(help="Model name (a lower-case DNS label).")],
        port: Annotated[int, typer.Option(help="The model's local endpoint port.")] = 3000,
        dry_run: DryRunOption = False,
    ) -> None:
        """Scaffold model-releases/MODEL/ (manifest, service, bentofile)."""

        def body() -> None:
            from ..names import check_model, model_dir
            from ..scaffold import new_model

            check_model(model)
            git = repo()
            if dry_run:
                say(f"would create {model_dir(model)}/ from the model template")
                return
            written = new_model(git.cwd, model, port=port)
            for path in written:
                say(f"created {path.relative_to(git.cwd)}")
            say(f"next: commit it (signed), then `releasectl release {model} 0.1.0`")

        run(body)

    @app.command()
    def schema() -> None:
        """Print the JSON Schema of release.yaml (for editors)."""

        def body() -> None:
            from ..manifest import json_schema

            emit(json_schema())

        run(body, json_mode=True)

    register_demo(app)


def register_demo(app: typer.Typer) -> None:
    @app.command()
    def demo(
        keep: Annotated[
            str | None, typer.Option(help="Run in this folder and keep it (default: a temp dir).")
        ] = None,
    ) -> None:
        """Run the end-to-end demo in a throwaway registry."""

        def body() -> None:
            from pathlib import Path

            from ..demo import run_demo

            run_demo(say, Path(keep).resolve() if keep else None)

        run(body)
