"""render: the kubernetes target's desired state, written into Git's working tree."""

from __future__ import annotations

from typing import Annotated

import typer

from releasectl.cli import JsonOption, ModelArg, ci_summary, emit, repo, run, say

CheckOption = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Write nothing; exit 1 when the rendered folder differs from the manifest (CI).",
    ),
]


def register(app: typer.Typer) -> None:
    @app.command()
    def render(model: ModelArg, check: CheckOption = False, json: JsonOption = False) -> None:
        """Render a kubernetes-target model's manifest into its folder (default
        deploy/<environment>/<model>/): kustomization.yaml pinning the image by
        digest, the Services, the Rollout or Deployment, the AnalysisTemplate.
        A re-render of the same state changes nothing."""

        def body() -> int:
            from releasectl.serving.kubernetes.desired import render_worktree

            result = render_worktree(repo(), model, check=check)
            stale = check and result.changed
            if json:
                emit({**result.summary(), "check": check})
            elif not result.changed:
                say(f"{result.folder}/ is up to date ({len(result.files)} files)")
            else:
                verb = "differs" if check else "written"
                for path in result.written:
                    say(f"{verb}: {path}")
                for path in result.removed:
                    say(f"{'stale' if check else 'removed'}: {path}")
            if stale:
                ci_summary(
                    f"❌ `{result.folder}/` differs from `releasectl render {model}`: "
                    "render and commit it"
                )
                if not json:
                    say(f"run `releasectl render {model}` and commit {result.folder}/")
            return 1 if stale else 0

        run(body, json_mode=json)
