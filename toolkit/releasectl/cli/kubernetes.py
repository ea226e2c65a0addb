"""`releasectl render`: writes the kubernetes target's desired state into Git's
working tree (docs/ARCHITECTURE.md, "Kubernetes").
"""

from __future__ import annotations

from typing import Annotated

import typer

from releasectl.cli.output import JsonOption, ModelArg, ci_summary, emit, funnel, repo, say, shown
from releasectl.errors import OperationFailed

app = typer.Typer()

CheckOption = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Write nothing; exit 1 when the rendered folder differs from the manifest (CI).",
    ),
]


@app.command()
@funnel()
def render(
    ctx: typer.Context, model: ModelArg, check: CheckOption = False, json: JsonOption = False
) -> None:
    """Render a kubernetes-target model's manifest into its folder (default
    deploy/<environment>/<model>/): kustomization.yaml pinning the image by
    digest, the Services, the Rollout or Deployment, the AnalysisTemplate.
    A re-render of the same state changes nothing."""
    from releasectl.render.desired import render_worktree

    result = render_worktree(repo(ctx), model, check=check)
    report = {**result.summary(), "check": check}
    if json and not (check and result.changed):
        emit(report)
    elif not json and not result.changed:
        say(f"{result.folder}/ is up to date ({len(result.files)} files)")
    elif not json:
        verb = "differs" if check else "written"
        for path in result.written:
            say(f"{verb}: {shown(path)}")
        for path in result.removed:
            say(f"{'stale' if check else 'removed'}: {shown(path)}")
    if check and result.changed:
        ci_summary(
            f"❌ `{result.folder}/` differs from `releasectl render {model}`: render and commit it"
        )
        raise OperationFailed(
            f"{result.folder}/ differs from what {model}'s manifest renders to",
            f"run `releasectl render {model}` and commit {result.folder}/",
            report=report,
        )
