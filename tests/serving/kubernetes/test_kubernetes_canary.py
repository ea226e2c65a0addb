"""The Argo Rollouts canary render (`deploy.strategy.kind: canary` on the kubernetes
target): rendered by `releasectl render` in a real registry, every object validated
as strictly as the blue-green render (kubernetes-validate; the Argo kinds against the
pinned packages' closed schemas), the manifest's steps in order as Argo steps, the
declared router, the background analysis from the same AnalysisTemplate, error rate
and latency from Istio's request metrics; a canary without a router, a mirror
through the Gateway API plugin and a router on a blue-green model refused
(docs/ARCHITECTURE.md, "Kubernetes")."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from testing.kubernetes import (
    FOLDER,
    GATEWAY_API,
    ISTIO,
    MANIFEST,
    canary_iris,
    documents,
    image,
    kubectl,
    kubernetes_iris,
    validate_argo,
    validate_builtin,
)
from testing.repos import Repo, new_repo

ARGO = {"Rollout", "AnalysisTemplate"}
# case -> (traffic, with a mirror step, with smoke requests)
CASES = {"istio": (ISTIO, True, True), "gateway_api": (GATEWAY_API, False, False)}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """case -> file name -> object, rendered by `releasectl render`; "root" the repository."""
    found: dict[str, dict[str, Any]] = {}
    for case, (traffic, mirror, smoke) in CASES.items():
        repo = new_repo(tmp_path_factory.mktemp(case))
        canary_iris(repo, traffic=traffic, mirror=mirror, smoke=smoke)
        repo.ok("render", "iris")
        found[case] = {**documents(repo.path / FOLDER), "root": repo.path}
    return found


def objects(rendered: dict[str, Any]) -> list[dict[str, Any]]:
    return [obj for name, obj in rendered.items() if name not in ("kustomization.yaml", "root")]


@pytest.mark.parametrize("case", list(CASES))
def test_the_canary_render_validates_strictly(rendered: dict[str, Any], case: str) -> None:
    everything = objects(rendered[case])
    argo = [o for o in everything if o["kind"] in ARGO]
    builtins = [o for o in everything if o["kind"] not in ARGO]
    assert sorted(o["metadata"]["name"] for o in builtins if o["kind"] == "Service") == [
        "iris",
        "iris-canary",
    ]
    assert sorted(o["kind"] for o in builtins) == ["Namespace", "Service", "Service"]
    for obj in builtins:
        assert validate_builtin(obj) is None, obj["kind"]
    _, _, smoke = CASES[case]
    assert sorted(o["kind"] for o in argo) == ["AnalysisTemplate"] * (2 if smoke else 1) + [
        "Rollout"
    ]
    assert validate_argo(argo) == [[] for _ in argo]


def test_a_misspelled_canary_field_fails_the_closed_schema(rendered: dict[str, Any]) -> None:
    """The closed schema reaches into the canary steps: the validation above can fail."""
    rollout = rendered["istio"]["rollout.yaml"]
    broken = copy.deepcopy(rollout)
    step = next(s for s in broken["spec"]["strategy"]["canary"]["steps"] if "setMirrorRoute" in s)
    step["setMirrorRoute"]["percent"] = step["setMirrorRoute"].pop("percentage")
    [problems] = validate_argo([broken])
    assert any("(percent)" in p for p in problems), problems


def test_the_steps_come_out_in_order_with_the_router(rendered: dict[str, Any]) -> None:
    canary = rendered["istio"]["rollout.yaml"]["spec"]["strategy"]["canary"]
    routes = [{"path": {"exact": "/predict"}}, {"path": {"exact": "/classify"}}]
    mirror = {"name": "releasectl-mirror", "match": routes}
    assert canary["steps"] == [
        # Smoke requests against one canary pod, before any user request reaches it.
        {"setCanaryScale": {"replicas": 1}},
        {"analysis": {"templates": [{"templateName": "iris-smoke"}]}},
        {"setCanaryScale": {"weight": 50}},
        {"setMirrorRoute": {**mirror, "percentage": 50}},
        {"pause": {"duration": "30s"}},
        {"setCanaryScale": {"weight": 100}},
        {"setMirrorRoute": {**mirror, "percentage": 100}},
        {"pause": {"duration": "1m"}},
        # The mirror removed (no match) before the first user request is answered.
        {"setMirrorRoute": {"name": "releasectl-mirror"}},
        {"setCanaryScale": {"matchTrafficWeight": True}},
        {"setWeight": 10},
        {"pause": {"duration": "30s"}},
        {"setWeight": 50},
        {"pause": {"duration": "1m30s"}},
        # The rest of the 10m bake at 100%.
        {"setWeight": 100},
        {"pause": {"duration": "6m30s"}},
    ]
    assert canary["canaryService"] == "iris-canary" and canary["stableService"] == "iris"
    assert canary["trafficRouting"] == {
        "istio": {"virtualService": {"name": "iris", "routes": ["primary"]}},
        "managedRoutes": [{"name": "releasectl-mirror"}],
    }
    # Background analysis from the first pause, with the release's version.
    assert canary["analysis"] == {
        "templates": [{"templateName": "iris"}],
        "args": [{"name": "version", "value": "0.0.0"}],
        "startingStep": 4,
    }
    smoke = rendered["istio"]["smoke-template.yaml"]["spec"]["metrics"][0]
    assert smoke["provider"]["web"]["url"] == "http://iris-canary.models.svc:80/predict"

    gateway = rendered["gateway_api"]["rollout.yaml"]["spec"]["strategy"]["canary"]
    assert gateway["steps"] == [
        {"setWeight": 10},
        {"pause": {"duration": "30s"}},
        {"setWeight": 50},
        {"pause": {"duration": "1m30s"}},
        {"setWeight": 100},
        {"pause": {"duration": "8m"}},
    ]
    assert gateway["trafficRouting"] == {
        "plugins": {
            "argoproj-labs/gatewayAPI": {"httpRoute": "iris-route", "namespace": "gateways"}
        }
    }
    assert gateway["analysis"]["startingStep"] == 1


def test_error_rate_reads_the_mesh_and_the_rest_is_marked_self_reported(
    rendered: dict[str, Any],
) -> None:
    istio = rendered["istio"]["analysis-template.yaml"]
    [error_rate] = istio["spec"]["metrics"]
    query = error_rate["provider"]["prometheus"]["query"]
    assert "istio_requests_total{" in query and "bentoml" not in query
    for matcher in (
        'reporter="destination"',
        'destination_workload_namespace="models"',
        'destination_canonical_service="iris"',
        'destination_canonical_revision="{{args.version}}"',
    ):
        assert matcher in query
    assert "annotations" not in istio["metadata"]
    # No standard request metrics behind the Gateway API: the bento's own, named so.
    gateway = rendered["gateway_api"]["analysis-template.yaml"]
    assert (
        "bentoml_service_request_total"
        in gateway["spec"]["metrics"][0]["provider"]["prometheus"]["query"]
    )
    assert gateway["metadata"]["annotations"] == {"releasectl.dev/self-reported": "error_rate"}


@pytest.mark.parametrize("case", list(CASES))
def test_kubectl_kustomize_builds_the_canary_folder(rendered: dict[str, Any], case: str) -> None:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(Path(rendered[case]["root"]) / FOLDER)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    built = [d for d in YAML(typ="safe").load_all(proc.stdout) if d]
    [rollout] = [d for d in built if d["kind"] == "Rollout"]
    assert rollout["spec"]["template"]["spec"]["containers"][0]["image"] == image(1)


def _refused(repo: Repo, expected: str) -> None:
    snapshot = repo.snapshot()
    proc = repo.cli("render", "iris")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"releasectl: {MANIFEST}: {expected}"]
    assert repo.snapshot() == snapshot
    assert not (repo.path / "deploy").exists()


def test_a_mirror_through_the_gateway_api_plugin_is_refused(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    canary_iris(repo, traffic=GATEWAY_API, mirror=True)
    _refused(
        repo,
        "a mirror step needs traffic.istio: the Gateway API plugin does not implement "
        "setMirrorRoute; use istio or weight steps only",
    )


def test_a_router_on_a_blue_green_model_is_refused(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    kubernetes_iris(repo)
    text = (repo.path / MANIFEST).read_text()
    repo.write(
        MANIFEST,
        text.replace("    namespace: models\n", f"    namespace: models\n    traffic: {ISTIO}\n"),
    )
    repo.commit("iris: a router without a canary")
    _refused(
        repo,
        "deploy.kubernetes.traffic is only for deploy.strategy.kind canary "
        "(kind is bluegreen): remove it",
    )


@pytest.mark.parametrize(
    ("traffic", "expected"),
    [
        (
            "{istio: {virtual_service: iris, weights: 5}}",
            "unknown key 'deploy.kubernetes.traffic.istio.weights'",
        ),
        (
            f"{{istio: {ISTIO[8:-1]}, gateway_api: {GATEWAY_API[14:-1]}}}",
            "deploy.kubernetes.traffic: Value error, traffic names exactly one router: "
            "istio or gateway_api",
        ),
    ],
    ids=["unknown-key", "two-routers"],
)
def test_a_bad_traffic_block_is_one_line(tmp_path: Path, traffic: str, expected: str) -> None:
    repo = new_repo(tmp_path)
    canary_iris(repo, traffic=traffic, mirror=False)
    proc = repo.cli("render", "iris")
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"releasectl: {MANIFEST}: ") and expected in line, line


def test_client_key_is_refused_on_kubernetes(tmp_path: Path) -> None:
    """Argo's weighted routes split per request: a sticky client key cannot be honoured."""
    repo = new_repo(tmp_path)
    canary_iris(repo, traffic=ISTIO, mirror=False)
    text = (repo.path / MANIFEST).read_text()
    repo.write(
        MANIFEST,
        text.replace("    kind: canary\n", "    kind: canary\n    client_key: X-Client-Id\n"),
    )
    repo.commit("iris: a client key")
    _refused(
        repo,
        "deploy.strategy.client_key is not possible on kubernetes: Argo Rollouts' weighted "
        "routes split per request, not per client; remove it",
    )
