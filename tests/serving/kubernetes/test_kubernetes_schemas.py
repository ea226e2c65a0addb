"""Every rendered object validates: built-in kinds with kubernetes-validate
(strict, a pinned Kubernetes version), the Argo kinds against the schemas the
pinned npm packages ship, closed so that a misspelled field fails, and
`kubectl kustomize` builds the folder with the image pinned by digest."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from testing.kubernetes import (
    FOLDER,
    documents,
    image,
    kubectl,
    kubernetes_iris,
    validate_argo,
    validate_builtin,
)
from testing.repos import new_repo

ARGO = {"Rollout", "AnalysisTemplate", "Application"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, Any]]]:
    """strategy -> file name -> object, rendered by `releasectl render` in a real registry."""

    found = {}
    for strategy in ("bluegreen", "deployment"):
        repo = new_repo(tmp_path_factory.mktemp(strategy))
        kubernetes_iris(repo, strategy=strategy, smoke=True)
        repo.ok("render", "iris")
        found[strategy] = documents(repo.path / FOLDER)
        found[strategy]["index"] = documents(repo.path / "deploy" / "production")[
            "kustomization.yaml"
        ]
        found[strategy]["path"] = {"root": str(repo.path)}
    return found


def objects(rendered: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        obj for name, obj in rendered.items() if name not in ("kustomization.yaml", "index", "path")
    ]


@pytest.mark.parametrize("strategy", ["bluegreen", "deployment"])
def test_builtin_kinds_validate_strictly(rendered: dict[str, Any], strategy: str) -> None:
    builtins = [o for o in objects(rendered[strategy]) if o["kind"] not in ARGO]
    kinds = sorted(o["kind"] for o in builtins)
    assert kinds == (
        ["Namespace", "Service", "Service"]
        if strategy == "bluegreen"
        else ["Deployment", "Namespace", "Service"]
    )
    for obj in builtins:
        assert validate_builtin(obj) is None, obj["kind"]


def test_argo_kinds_validate_against_the_closed_package_schemas(rendered: dict[str, Any]) -> None:
    argo = [o for o in objects(rendered["bluegreen"]) if o["kind"] in ARGO]
    # The traffic template, the smoke template (web provider) and the Rollout.
    assert sorted(o["kind"] for o in argo) == ["AnalysisTemplate", "AnalysisTemplate", "Rollout"]
    assert validate_argo(argo) == [[], [], []]


def test_a_misspelled_field_fails_each_validator(rendered: dict[str, Any]) -> None:
    """Closing the schemas is what catches these: the packages' own validate()
    accepts unknown fields (its message is not among the problems)."""
    by_kind = {o["kind"]: o for o in objects(rendered["bluegreen"])}
    rollout = copy.deepcopy(by_kind["Rollout"])
    blue_green = rollout["spec"]["strategy"]["blueGreen"]
    blue_green["scaleDownDelaySecond"] = blue_green.pop("scaleDownDelaySeconds")
    template = copy.deepcopy(by_kind["AnalysisTemplate"])
    metric = template["spec"]["metrics"][0]
    metric["successCondtion"] = metric.pop("successCondition")
    pod = copy.deepcopy(by_kind["Rollout"])
    pod["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}

    problems = validate_argo([rollout, template, pod])
    assert problems[0] == [
        "closed schema: /spec/strategy/blueGreen must NOT have additional properties "
        "(scaleDownDelaySecond)"
    ]
    assert problems[1] == [
        "closed schema: /spec/metrics/0 must NOT have additional properties (successCondtion)"
    ]
    assert problems[2] == [
        "closed schema: /spec/template/spec/containers/0 must NOT have additional properties "
        "(readinesProbe)"
    ]
    service = copy.deepcopy(by_kind["Service"])
    service["spec"]["selecter"] = service["spec"].pop("selector")
    assert "'selecter' was unexpected" in (validate_builtin(service) or "")


@pytest.mark.parametrize("strategy", ["bluegreen", "deployment"])
def test_kubectl_kustomize_builds_the_folder_with_the_image_pinned_by_digest(
    rendered: dict[str, Any], strategy: str
) -> None:
    root = Path(rendered[strategy]["path"]["root"])
    for folder in (root / FOLDER, root / "deploy" / "production"):
        proc = subprocess.run(
            [kubectl(), "kustomize", str(folder)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        built = [d for d in YAML(typ="safe").load_all(proc.stdout) if d]
        workload = next(d for d in built if d["kind"] in ("Rollout", "Deployment"))
        assert workload["spec"]["template"]["spec"]["containers"][0]["image"] == image(1)
        # The namespace every object goes to exists: its Namespace is in the build
        # (cluster-scoped), and validates strictly as the built output has it.
        [namespace] = [d for d in built if d["kind"] == "Namespace"]
        assert namespace["metadata"]["name"] == "models"
        assert validate_builtin(namespace) is None
        assert {d["metadata"]["namespace"] for d in built if d is not namespace} == {"models"}
        assert len(built) == len(objects(rendered[strategy]))
