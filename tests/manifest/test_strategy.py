"""`deploy.strategy` and `analysis.compare`: the schema, each rule's one line, the
old `deploy.kubernetes.strategy` refused with its migration, steps that must fit
in the bake, a canary the local target does not serve yet refused where it would
deploy, and a kubernetes canary without a traffic router refused
(docs/ARCHITECTURE.md, "Deployment strategies", "Kubernetes")."""

from __future__ import annotations

import json

import pytest

from releasectl.errors import BadInput
from releasectl.manifest import schema as mf
from testing.kubernetes import MANIFEST, kubernetes_iris
from testing.repos import Repo

BASE = """\
apiVersion: releasectl/v1
model: iris
version: "1.0.0"
serial: 1
bundle: {bento: iris}
analysis:
  bake: 5m
  metrics: {error_rate: {max: 0.05}}
"""

# The issue's form, as a user writes it.
CANARY = """\
deploy:
  strategy:
    kind: canary
    mirror_routes: [/predict]
    client_key: X-Client-Id
    steps:
      - {mirror: 100, for: 30s}
      - {weight: 10, for: 30s}
      - {weight: 50, for: 30s}
"""
COMPARE = "  compare: {field: label, max_disagreement: 0.1, max_latency_ratio: 2.0}\n"
K8S = "  target: kubernetes\n  kubernetes: {image: ghcr.io/org/iris, namespace: models}\n"


def load(deploy: str, analysis: str = "") -> mf.Manifest:
    return mf.load(BASE.replace("  bake: 5m\n", "  bake: 5m\n" + analysis) + deploy, "x")


def strategy(text: str) -> str:
    return f"deploy:\n  strategy: {text}\n"


def test_the_issues_canary_form_reads_and_round_trips() -> None:
    manifest = load(CANARY, COMPARE)
    spec = manifest.deploy.strategy
    assert spec.kind == "canary" and spec.mirror_routes == ["/predict"]
    assert spec.client_key == "X-Client-Id"
    assert [(s.kind, s.percent, s.seconds) for s in spec.steps or []] == [
        ("mirror", 100, 30.0),
        ("weight", 10, 30.0),
        ("weight", 50, 30.0),
    ]
    assert manifest.analysis.compare is not None
    assert manifest.analysis.compare.field == "label"
    # Written back as it was read: `for`, durations as text.
    dumped = manifest.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["deploy"]["strategy"]["steps"][0] == {"mirror": 100, "for": "30s"}
    assert mf.validate(dumped, "x") == manifest


def test_a_manifest_without_a_strategy_stays_blue_green() -> None:
    assert load("deploy:\n  port: 3100\n").deploy.strategy.kind == "bluegreen"
    assert load(strategy("{kind: bluegreen}")).deploy.strategy.steps is None


STEPS = "{kind: canary, mirror_routes: [/predict], steps: [%s]}"


@pytest.mark.parametrize(
    ("deploy", "analysis", "line"),
    [
        (
            strategy(STEPS % "{mirror: 10, weight: 10, for: 1m}"),
            "",
            "x: deploy.strategy.steps.0: Value error, a step is {mirror: P, for: D} or "
            "{weight: P, for: D}: not both",
        ),
        (
            strategy(STEPS % "{for: 1m}"),
            "",
            "x: deploy.strategy.steps.0: Value error, a step is {mirror: P, for: D} or "
            "{weight: P, for: D}: name mirror or weight",
        ),
        (strategy(STEPS % "{weight: 10}"), "", "x: missing key 'deploy.strategy.steps.0.for'"),
        (
            strategy(STEPS % "{weight: 10, for_: 1m}"),
            "",
            "x: missing key 'deploy.strategy.steps.0.for' (and 1 more problem)",
        ),
        (
            strategy(STEPS % "{weight: 10, for: 1m, pause: 1}"),
            "",
            "x: unknown key 'deploy.strategy.steps.0.pause'",
        ),
        (
            strategy(STEPS % "{weight: 0, for: 1m}"),
            "",
            "x: deploy.strategy.steps.0.weight: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            strategy(STEPS % "{mirror: 101, for: 1m}"),
            "",
            "x: deploy.strategy.steps.0.mirror: Input should be less than or equal to 100 "
            "(got 101)",
        ),
        (
            strategy(STEPS % "{weight: '10', for: 1m}"),
            "",
            "x: deploy.strategy.steps.0.weight: Input should be a valid integer (got '10')",
        ),
        (
            strategy(STEPS % "{weight: 10, for: 30}"),
            "",
            "x: deploy.strategy.steps.0.for: Value error, a duration is written with a unit, "
            "like '10s' or '5m', not 30 (got 30)",
        ),
        (
            strategy(STEPS % "{weight: 50, for: 1m}, {weight: 10, for: 1m}"),
            "",
            "x: deploy.strategy: Value error, step 2: weight 10 after weight 50: the weight "
            "never goes down",
        ),
        (
            strategy(STEPS % "{weight: 10, for: 1m}, {mirror: 100, for: 1m}"),
            "",
            "x: deploy.strategy: Value error, step 2: a mirror step after weight 10: the "
            "weight never goes down",
        ),
        (
            strategy("{kind: canary, steps: [{mirror: 100, for: 1m}]}"),
            "",
            "x: deploy.strategy: Value error, a mirror step needs mirror_routes, the routes "
            "to copy (e.g. [/predict])",
        ),
        (
            strategy("{kind: canary, mirror_routes: [/predict, /feedback], steps: []}"),
            "",
            "x: deploy.strategy.mirror_routes: Value error, /feedback is never mirrored: "
            "feedback must never be copied",
        ),
        (
            strategy("{kind: canary, mirror_routes: [predict], steps: []}"),
            "",
            "x: deploy.strategy.mirror_routes: Value error, 'predict' is not a route: write it "
            "as /predict, with its leading /",
        ),
        (
            strategy("{kind: canary, client_key: 'X Client', steps: [{weight: 5, for: 1m}]}"),
            "",
            "x: deploy.strategy.client_key: Value error, 'X Client' is not an HTTP header "
            "name (letters, digits and !#$%&'*+-.^_`|~) (got 'X Client')",
        ),
        (
            strategy("{kind: canary}"),
            "",
            "x: deploy.strategy: Value error, kind canary needs at least one step: "
            "{mirror: P, for: D} or {weight: P, for: D}",
        ),
        (
            strategy("{kind: canary, steps: []}"),
            "",
            "x: deploy.strategy: Value error, kind canary needs at least one step: "
            "{mirror: P, for: D} or {weight: P, for: D}",
        ),
        (
            strategy("{steps: [{weight: 5, for: 1m}]}"),
            "",
            "x: deploy.strategy: Value error, steps is only for kind: canary (kind is bluegreen)",
        ),
        (
            strategy("{kind: bluegreen, mirror_routes: [/predict], client_key: X-Id}"),
            "",
            "x: deploy.strategy: Value error, mirror_routes, client_key are only for kind: "
            "canary (kind is bluegreen)",
        ),
        (
            strategy("{kind: shadow}"),
            "",
            "x: deploy.strategy.kind: Input should be 'bluegreen', 'canary' or 'deployment' "
            "(got 'shadow')",
        ),
        (strategy("{kind: canary, stepz: []}"), "", "x: unknown key 'deploy.strategy.stepz'"),
        (
            strategy("{kind: deployment}"),
            "",
            "x: deploy.strategy.kind deployment is for the kubernetes target only, not local: "
            "use bluegreen or canary",
        ),
        (
            strategy("{kind: canary, steps: [{weight: 10, for: 1m}]}"),
            COMPARE,
            "x: analysis.compare needs a mirror step in deploy.strategy.steps: it compares "
            "the candidate's and the stable model's answers to the same mirrored requests",
        ),
        (
            "deploy:\n  port: 3100\n",
            COMPARE,
            "x: analysis.compare needs a mirror step in deploy.strategy.steps: it compares "
            "the candidate's and the stable model's answers to the same mirrored requests",
        ),
        (
            CANARY + K8S,
            COMPARE,
            "x: analysis.compare is not possible on the kubernetes target: the mesh discards "
            "mirrored responses, so there is no candidate answer to compare",
        ),
        (
            CANARY,
            "  compare: {max_disagreement: 0.1}\n",
            "x: missing key 'analysis.compare.field'",
        ),
        (
            CANARY,
            "  compare: {field: 'the label', max_disagreement: 0.1}\n",
            "x: analysis.compare.field: String should match pattern "
            "'^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$' (got 'the label')",
        ),
        (
            CANARY,
            "  compare: {field: label, max_disagreement: 1.5}\n",
            "x: analysis.compare.max_disagreement: Input should be less than or equal to 1 "
            "(got 1.5)",
        ),
        (
            CANARY,
            "  compare: {field: label, max_latency_ratio: 0}\n",
            "x: analysis.compare.max_latency_ratio: Input should be greater than 0 (got 0)",
        ),
        (
            CANARY,
            "  compare: {field: label}\n",
            "x: analysis.compare: Value error, compare needs max_disagreement, "
            "max_latency_ratio or both",
        ),
        (
            strategy(STEPS % "{mirror: 100, for: 3m}, {weight: 10, for: 2m}"),
            "",
            "x: deploy.strategy.steps last 5m in all, not less than analysis.bake 5m: the "
            "steps must fit in the bake; shorten them or lengthen the bake",
        ),
    ],
    ids=[
        "mirror-and-weight",
        "neither",
        "no-for",
        "for-spelt-for_",
        "unknown-step-key",
        "weight-0",
        "mirror-101",
        "weight-as-text",
        "for-without-unit",
        "weight-goes-down",
        "mirror-after-weight",
        "mirror-without-routes",
        "feedback-mirrored",
        "route-without-slash",
        "client-key-not-a-header",
        "canary-without-steps",
        "canary-with-empty-steps",
        "steps-on-bluegreen",
        "canary-keys-on-bluegreen",
        "unknown-kind",
        "unknown-strategy-key",
        "deployment-on-local",
        "compare-without-mirror-step",
        "compare-without-canary",
        "compare-on-kubernetes",
        "compare-without-field",
        "compare-field-not-a-name",
        "disagreement-over-1",
        "latency-ratio-0",
        "compare-without-a-limit",
        "steps-do-not-fit-in-the-bake",
    ],
)
def test_each_rule_is_one_line_saying_what_is_wrong(deploy: str, analysis: str, line: str) -> None:
    with pytest.raises(BadInput) as refused:
        load(deploy, analysis)
    assert refused.value.line() == line


@pytest.mark.parametrize(
    ("route", "ok"), [("/feedback/", False), ("/Feedback", False), ("/feedbacks", True)]
)
def test_no_spelling_of_feedback_is_mirrored(route: str, ok: bool) -> None:
    deploy = strategy(
        f"{{kind: canary, mirror_routes: [{route}], steps: [{{mirror: 5, for: 1m}}]}}"
    )
    if ok:
        assert load(deploy).deploy.strategy.mirror_routes == [route]
    else:
        with pytest.raises(BadInput, match="feedback must never be copied"):
            load(deploy)


def test_steps_just_inside_the_bake_pass() -> None:
    fits = load(strategy(STEPS % "{mirror: 100, for: 2m}, {weight: 10, for: 2m59s}"))
    assert fits.deploy.strategy.seconds == 299.0


@pytest.mark.parametrize("old", ["deployment", "bluegreen"])
def test_the_old_kubernetes_strategy_reads_as_the_new_and_says_what_to_write(old: str) -> None:
    """A release made before the move still reads (a revert may bring it back), as
    the current form; what new content must write instead rides along with it."""
    manifest = load(K8S.replace("models}", f"models, strategy: {old}}}").join(["deploy:\n", ""]))
    assert manifest.deploy.strategy.kind == old
    with pytest.raises(BadInput) as refused:
        mf.refuse_old_spelling(manifest)
    line = f"x: deploy.kubernetes.strategy moved: write deploy.strategy.kind: {old}"
    assert refused.value.line() == line
    mf.refuse_old_spelling(load(strategy(f"{{kind: {old}}}") + K8S.removeprefix("deploy:\n")))


def test_a_form_no_release_could_have_had_is_refused() -> None:
    both = "deploy:\n  strategy: {kind: deployment}\n" + K8S.replace(
        "models}", "models, strategy: bluegreen}"
    )
    cases = {
        K8S.replace("models}", "models, strategy: rolling}").join(["deploy:\n", ""]): (
            "write deploy.strategy.kind: one of bluegreen, canary, deployment"
        ),
        both: "remove it, deploy.strategy.kind says the strategy now",
    }
    for text, instead in cases.items():
        with pytest.raises(BadInput) as refused:
            load(text)
        assert refused.value.line() == f"x: deploy.kubernetes.strategy moved: {instead}"


def test_check_and_release_refuse_the_old_form_and_render_reads_it_as_the_new(
    registry: Repo,
) -> None:
    kubernetes_iris(registry)
    base = registry.head()
    text = (registry.path / MANIFEST).read_text()
    new = text.replace("version: 0.0.0", "version: 1.0.0").replace("serial: 0", "serial: 1")
    old = new.replace(
        "    namespace: models\n", "    namespace: models\n    strategy: deployment\n"
    )
    registry.write(MANIFEST, old)
    registry.commit("iris: the old form")
    line = (
        "model-releases/iris/release.yaml: deploy.kubernetes.strategy moved: "
        "write deploy.strategy.kind: deployment"
    )
    snapshot = registry.snapshot()
    checked = registry.cli("check", "--base", base, "--no-build", "--json")
    assert checked.returncode == 2, checked.stderr
    findings = {(f["subject"], f["check"]): f for f in json.loads(checked.stdout)["findings"]}
    assert findings[("iris", "manifest")]["detail"] == line
    released = registry.cli("release", "iris", "1.0.0")
    assert released.returncode == 2, released.stderr
    assert released.stderr.splitlines() == [f"releasectl: {line}"]
    assert registry.snapshot() == snapshot
    # Rendered as the current form renders: a Deployment, the same files.
    registry.ok("render", "iris")
    folder = registry.path / "deploy"
    from_old = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert any(b"kind: Deployment" in body for body in from_old.values())
    strategy_line = "  strategy: {kind: deployment}\n  kubernetes:\n"
    registry.write(MANIFEST, new.replace("  kubernetes:\n", strategy_line))
    registry.commit("iris: the current form")
    registry.ok("render", "iris")
    from_new = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert from_new == from_old


def test_check_refuses_canary_steps_that_do_not_fit_in_the_bake(registry: Repo) -> None:
    registry.add_model("iris")
    base = registry.head()
    text = (registry.path / MANIFEST).read_text().replace("version: 0.0.0", "version: 1.0.0")
    canary = (
        "  strategy:\n    kind: canary\n    steps:\n"
        "      - {weight: 10, for: 40s}\n      - {weight: 50, for: 30s}\n"
        "analysis:\n  bake: 1m\n  metrics: {error_rate: {max: 0.05}}\n"
    )
    registry.write(MANIFEST, text.replace("serial: 0", "serial: 1") + canary)
    registry.commit("iris 1.0.0, a canary longer than its bake")
    proc = registry.cli("check", "--base", base, "--no-build", "--json")
    assert proc.returncode == 2, proc.stderr
    findings = {(f["subject"], f["check"]): f for f in json.loads(proc.stdout)["findings"]}
    assert findings[("iris", "manifest")]["detail"] == (
        "model-releases/iris/release.yaml: deploy.strategy.steps last 1m10s in all, not less "
        "than analysis.bake 1m: the steps must fit in the bake; shorten them or lengthen "
        "the bake"
    )
    # Inside the bake, the steps pass: the local target serves a canary.
    registry.write(MANIFEST, (registry.path / MANIFEST).read_text().replace("40s", "20s"))
    registry.commit("iris: steps inside the bake")
    proc = registry.cli("check", "--base", base, "--no-build", "--json")
    findings = {(f["subject"], f["check"]): f for f in json.loads(proc.stdout)["findings"]}
    assert findings[("iris", "manifest")]["ok"], findings[("iris", "manifest")]


def test_the_kubernetes_render_and_deploy_refuse_a_canary_without_a_router(
    registry: Repo,
) -> None:
    """Without deploy.kubernetes.traffic Argo would split by replica count: refused
    (exit 2) before anything is written (docs/ARCHITECTURE.md, "Kubernetes")."""
    kubernetes_iris(registry)
    text = (registry.path / MANIFEST).read_text()
    canary = "  strategy:\n    kind: canary\n    steps:\n      - {weight: 10, for: 30s}\n"
    registry.write(MANIFEST, text.replace("  kubernetes:\n", canary + "  kubernetes:\n"))
    registry.commit("iris: canary")
    snapshot = registry.snapshot()
    line = (
        f"releasectl: {MANIFEST}: deploy.strategy.kind canary on kubernetes needs "
        "deploy.kubernetes.traffic (istio or gateway_api): without a router Argo Rollouts "
        "splits by replica count and the candidate would be judged by its own pods' figures"
    )
    for command in (["render", "iris"], ["release", "iris", "1.0.0"], ["deploy", "iris"]):
        proc = registry.cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [line], proc.stderr
    assert registry.snapshot() == snapshot
    assert not (registry.path / "deploy").exists()
