"""`releasectl new --strategy canary`: the template's canary form (docs/ARCHITECTURE.md,
"Deployment strategies"), valid as written, its steps inside its bake; blue-green stays
the default, so `deploy` without a watch keeps serving the new version at once."""

from __future__ import annotations

import pytest

from releasectl.manifest import schema as mf
from testing.repos import Repo, assert_refused

MANIFEST = "model-releases/{}/release.yaml"


def test_new_scaffolds_the_canary_form_and_it_validates(registry: Repo) -> None:
    registry.ok("new", "iris", "--strategy", "canary")
    registry.ok("new", "wine")
    canary = mf.load((registry.path / MANIFEST.format("iris")).read_text(), "iris", model="iris")
    strategy = canary.deploy.strategy
    assert strategy.kind == "canary" and strategy.mirror_routes == ["/predict"]
    assert strategy.client_key == "X-Client-Id"
    assert [(s.kind, s.percent, s.seconds) for s in strategy.steps or []] == [
        ("mirror", 100, 30),
        ("weight", 10, 30),
        ("weight", 50, 30),
    ]
    assert strategy.seconds < canary.analysis.bake  # time left at 100% under the watcher
    compare = canary.analysis.compare
    assert compare is not None and compare.field == "label"
    plain = mf.load((registry.path / MANIFEST.format("wine")).read_text(), "wine", model="wine")
    assert plain.deploy.strategy.kind == "bluegreen" and plain.analysis.compare is None


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--strategy", "rolling"], "--strategy rolling: not a strategy new scaffolds"),
        (["--strategy", "canary", "--from", "wine"], "--strategy is for the template"),
    ],
)
def test_a_strategy_new_cannot_scaffold_is_refused(
    registry: Repo, args: list[str], words: str
) -> None:
    assert_refused(registry, "new", "iris", *args, code=2, words=words)
