"""The kubernetes target's rendered state in Git: `releasectl render`, the
release commit that carries it, the revert that restores it byte for byte,
and `init --kubernetes` (docs/ARCHITECTURE.md, "Kubernetes")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from testing.kubernetes import (
    FOLDER,
    MANIFEST,
    documents,
    image,
    kubernetes_iris,
    pin_image,
    validate_argo,
)
from testing.repos import Repo, copy_repo

INDEX = "deploy/production/kustomization.yaml"


def changed_paths(repo: Repo, rev: str) -> list[str]:
    return repo.git("diff-tree", "--no-commit-id", "--name-only", "-r", rev).splitlines()


def verify_commit(repo: Repo, rev: str) -> None:
    allowed = repo.path / ".releasectl" / "allowed_signers"
    subprocess.run(
        ["git", "-c", f"gpg.ssh.allowedSignersFile={allowed}", "verify-commit", rev],
        cwd=repo.path,
        capture_output=True,
        check=True,
    )


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_render_writes_the_folder_deterministically_and_a_rerender_changes_nothing(
    registry: Repo, tmp_path: Path
) -> None:
    kubernetes_iris(registry)
    other = copy_repo(registry, tmp_path / "copy")

    out = registry.ok("render", "iris")
    folder = registry.path / FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [
        "analysis-template.yaml",
        "kustomization.yaml",
        "namespace.yaml",
        "rollout.yaml",
        "service-preview.yaml",
        "service.yaml",
    ]
    assert f"written: {FOLDER}/rollout.yaml" in out
    objects = documents(folder)
    assert objects["kustomization.yaml"]["images"] == [
        {
            "name": image(1).split("@")[0],
            "newName": image(1).split("@")[0],
            "digest": image(1)[-71:],
        }
    ]
    pod = objects["rollout.yaml"]["spec"]["template"]
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/name": "iris",
        "app.kubernetes.io/version": "0.0.0",
        "releasectl.dev/serial": "0",
    }
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["ports"][0]["containerPort"] == 3000
    blue_green = objects["rollout.yaml"]["spec"]["strategy"]["blueGreen"]
    assert blue_green["scaleDownDelaySeconds"] == 600  # deploy.standby: 10m
    # No smoke declared: no pre-promotion analysis (the preview gets no traffic).
    assert "prePromotionAnalysis" not in blue_green
    assert blue_green["postPromotionAnalysis"]["templates"] == [{"templateName": "iris"}]
    assert blue_green["postPromotionAnalysis"]["args"] == [{"name": "version", "value": "0.0.0"}]
    assert objects["rollout.yaml"]["spec"]["rollbackWindow"] == {"revisions": 3}
    assert objects["namespace.yaml"]["metadata"]["name"] == "models"

    # The same state renders to the same bytes elsewhere; a re-render touches nothing.
    other.ok("render", "iris")
    for path in folder.iterdir():
        assert path.read_bytes() == (other.path / FOLDER / path.name).read_bytes(), path.name
    before = mtimes(folder)
    again = registry.ok("render", "iris")
    assert again == f"{FOLDER}/ is up to date (7 files)\n"
    assert mtimes(folder) == before
    registry.commit("render iris", "deploy")
    assert registry.cli("render", "iris", "--check").returncode == 0


def test_render_check_names_what_differs_and_writes_nothing(registry: Repo) -> None:
    kubernetes_iris(registry)
    registry.ok("render", "iris")
    registry.commit("render iris", "deploy")
    edited = registry.path / FOLDER / "rollout.yaml"
    edited.write_text(edited.read_text().replace("replicas: 2", "replicas: 5"))
    (registry.path / FOLDER / "extra.yaml").write_text("kind: ConfigMap\n")
    snapshot = registry.snapshot()

    proc = registry.cli("render", "iris", "--check")
    assert proc.returncode == 1
    assert f"differs: {FOLDER}/rollout.yaml" in proc.stdout
    assert f"stale: {FOLDER}/extra.yaml" in proc.stdout
    assert registry.snapshot() == snapshot
    assert "replicas: 5" in edited.read_text()

    report = json.loads(registry.cli("render", "iris", "--check", "--json").stdout)
    assert report["written"] == [f"{FOLDER}/rollout.yaml"]
    assert report["removed"] == [f"{FOLDER}/extra.yaml"]
    assert report["changed"] is True

    registry.ok("render", "iris")  # repairs it
    assert registry.git("status", "--porcelain") == ""


def test_release_commits_the_rendered_folder_in_its_signed_commit(registry: Repo) -> None:
    kubernetes_iris(registry, pinned=7)
    registry.ok("release", "iris", "1.0.0")

    head = registry.head()
    verify_commit(registry, head)
    assert registry.git("rev-parse", "release/iris/v1.0.0^{commit}") == head
    paths = changed_paths(registry, head)
    assert MANIFEST in paths and INDEX in paths
    assert {p for p in paths if p not in (MANIFEST, INDEX)} == {
        f"{FOLDER}/{name}"
        for name in (
            "analysis-template.yaml",
            "kustomization.yaml",
            "namespace.yaml",
            "rollout.yaml",
            "service-preview.yaml",
            "service.yaml",
        )
    }
    objects = documents(registry.path / FOLDER)
    assert objects["kustomization.yaml"]["images"][0]["digest"] == image(7)[-71:]
    labels = objects["rollout.yaml"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == "1.0.0"
    assert labels["releasectl.dev/serial"] == "1"
    index = documents(registry.path / "deploy" / "production")["kustomization.yaml"]
    assert index["resources"] == ["iris"]
    # The working tree followed; the committed folder is what a render gives.
    assert registry.git("status", "--porcelain") == ""
    assert registry.cli("render", "iris", "--check").returncode == 0


def test_revert_restores_the_rendered_folder_byte_for_byte(registry: Repo) -> None:
    kubernetes_iris(registry, pinned=1)
    registry.ok("release", "iris", "1.0.0")
    registry.ok("mark-stable", "iris", "1.0.0")
    pin_image(registry, 2)
    # 1.1.0 also changes the strategy: its folder has other files, which must go.
    text = (registry.path / MANIFEST).read_text()
    registry.write(
        MANIFEST,
        text.replace("  kubernetes:\n", "  strategy: {kind: deployment}\n  kubernetes:\n"),
    )
    registry.commit("iris: plain deployment")
    registry.ok("release", "iris", "1.1.0")
    assert (registry.path / FOLDER / "deployment.yaml").is_file()
    before = registry.head()

    registry.ok("revert", "iris", "--reason", "error rate")

    head = registry.head()
    assert registry.git("rev-parse", f"{head}^") == before  # one commit
    verify_commit(registry, head)
    diff = subprocess.run(
        ["git", "diff", "--quiet", "stable/iris/v1.0.0", "HEAD", "--", FOLDER],
        cwd=registry.path,
        check=False,
    )
    assert diff.returncode == 0
    assert all(
        p.startswith(("model-releases/iris/", f"{FOLDER}/")) for p in changed_paths(registry, head)
    ), changed_paths(registry, head)
    assert f"{FOLDER}/deployment.yaml" in changed_paths(registry, head)
    assert not (registry.path / FOLDER / "deployment.yaml").exists()
    assert registry.git("status", "--porcelain") == ""
    # Re-rendering the reverted manifest (serial +1, a rollback record) changes nothing.
    before_render = mtimes(registry.path / FOLDER)
    assert registry.ok("render", "iris").endswith("is up to date (7 files)\n")
    assert mtimes(registry.path / FOLDER) == before_render
    assert registry.cli("render", "iris", "--check").returncode == 0


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("    replicas: 2\n", "    replicas: 2\n    replcas: 3\n"),
            "unknown key 'deploy.kubernetes.replcas'",
        ),
        (
            (
                "    image: 127.0.0.1:5000/releasectl/iris\n",
                "    image: 127.0.0.1:5000/releasectl/iris:1.0\n",
            ),
            "deploy.kubernetes.image: Value error, must be an image repository without tag",
        ),
        (
            (f"  image: {image(1)}\n", "  image: 127.0.0.1:5000/releasectl/iris:1.0\n"),
            "bundle.image: String should match pattern",
        ),
        (
            ("    namespace: models\n", "    namespace: Models_1\n"),
            "deploy.kubernetes.namespace: String should match pattern",
        ),
        (
            ("  target: kubernetes\n", "  target: local\n"),
            "deploy.kubernetes is set but target is not kubernetes",
        ),
    ],
    ids=[
        "unknown-field",
        "image-with-tag",
        "pin-without-digest",
        "bad-namespace",
        "block-without-target",
    ],
)
def test_bad_manifest_is_exit_2_with_one_line_and_nothing_written(
    registry: Repo, edit: tuple[str, str], expected: str
) -> None:
    kubernetes_iris(registry)
    text = (registry.path / MANIFEST).read_text()
    assert edit[0] in text
    registry.write(MANIFEST, text.replace(edit[0], edit[1]))
    registry.commit("iris: a mistake")
    snapshot = registry.snapshot()
    for command in (["render", "iris"], ["release", "iris", "1.0.0"]):
        proc = registry.cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert expected in proc.stderr, proc.stderr
        assert registry.snapshot() == snapshot
    assert not (registry.path / "deploy").exists()


def test_kubernetes_target_without_its_block_or_pin_is_refused(registry: Repo) -> None:
    registry.add_model("iris")
    text = (registry.path / MANIFEST).read_text()
    registry.write(MANIFEST, text.replace("  target: local\n", "  target: kubernetes\n"))
    registry.commit("iris: kubernetes, no block")
    proc = registry.cli("render", "iris")
    assert proc.returncode == 2
    assert "deploy: Value error, target kubernetes needs a deploy.kubernetes block" in proc.stderr

    text = (
        (registry.path / MANIFEST)
        .read_text()
        .replace(
            "  standby: 10m\n",
            "  standby: 10m\n  kubernetes:\n    image: 127.0.0.1:5000/releasectl/iris\n"
            "    namespace: models\n",
        )
    )
    registry.write(MANIFEST, text + "analysis:\n  source: {kind: prometheus, url: 'http://p'}\n")
    registry.commit("iris: the block, no image yet")
    snapshot = registry.snapshot()
    for command in (["render", "iris"], ["release", "iris", "1.0.0"]):
        proc = registry.cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert "bundle.image is not pinned" in proc.stderr
        assert len(proc.stderr.splitlines()) == 1
        assert registry.snapshot() == snapshot

    # A base image lets the release build the image, but only a release that builds
    # its bundle can: --no-build with nothing pinned is refused, nothing written.
    text = (
        (registry.path / MANIFEST)
        .read_text()
        .replace(
            "    namespace: models\n",
            "    namespace: models\n    base_image: 127.0.0.1:5000/py:3\n",
        )
    )
    registry.write(MANIFEST, text)
    registry.commit("iris: a base image")
    snapshot = registry.snapshot()
    proc = registry.cli("release", "iris", "1.0.0", "--no-build")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("releasectl: model-releases/iris/release.yaml: bundle.image is")
    assert len(proc.stderr.splitlines()) == 1
    assert registry.snapshot() == snapshot


def test_init_kubernetes_writes_an_argo_cd_application_for_deploy(
    registry: Repo, tmp_path: Path
) -> None:
    path = "deploy/argocd/production.yaml"
    before = registry.head()
    out = registry.ok("init", "--kubernetes")
    assert f"added at {registry.head()[:12]}: {path}" in out
    assert registry.git("rev-parse", "HEAD^") == before
    verify_commit(registry, "HEAD")
    assert changed_paths(registry, "HEAD") == [path]
    application = documents(registry.path / "deploy" / "argocd")["production.yaml"]
    assert application["spec"]["source"]["path"] == "deploy/production"
    assert application["spec"]["source"]["targetRevision"] == "main"
    assert application["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    # CreateNamespace makes the destination's namespace: the Application names it.
    assert application["spec"]["destination"]["namespace"] == "models"
    assert validate_argo([application]) == [[]]
    # Idempotent: nothing more to add.
    assert "nothing to do" in registry.ok("init", "--kubernetes")
    assert registry.git("rev-list", "--count", f"{before}..HEAD") == "1"


def test_pull_request_check_refuses_a_rendered_folder_that_differs(registry: Repo) -> None:
    kubernetes_iris(registry)
    base = registry.head()
    text = (registry.path / MANIFEST).read_text()
    registry.write(
        MANIFEST, text.replace("version: 0.0.0", "version: 1.0.0").replace("serial: 0", "serial: 1")
    )
    registry.ok("render", "iris")
    registry.commit("iris 1.0.0, rendered", "model-releases", "deploy")
    proc = registry.cli("check", "--base", base, "--no-build", "--json")
    findings = {
        f["check"]: f for f in json.loads(proc.stdout)["findings"] if f["subject"] == "iris"
    }
    assert findings["rendered"]["ok"] is True, findings

    rollout = registry.path / FOLDER / "rollout.yaml"
    rollout.write_text(rollout.read_text().replace("replicas: 2", "replicas: 9"))
    registry.commit("iris: a hand edit", "deploy")
    proc = registry.cli("check", "--base", base, "--no-build", "--json")
    assert proc.returncode != 0
    findings = {
        f["check"]: f for f in json.loads(proc.stdout)["findings"] if f["subject"] == "iris"
    }
    assert findings["rendered"]["ok"] is False
    assert f"{FOLDER}/rollout.yaml" in findings["rendered"]["detail"]


def check_findings(repo: Repo, base: str) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
    proc = repo.cli("check", "--base", base, "--no-build", "--json")
    findings = json.loads(proc.stdout)["findings"]
    return proc.returncode, {(f["subject"], f["check"]): f for f in findings}


def test_pull_request_check_owns_every_change_to_the_deploy_folder(registry: Repo) -> None:
    """Argo CD applies what deploy/ holds, so a pull request that touches only
    deploy/ is checked as strictly as a release: a hand-pinned image, a file no
    model renders, an index that lists a stranger or drops a model, all refused."""
    kubernetes_iris(registry)
    registry.ok("render", "iris")
    registry.commit("render iris", "deploy")
    base = registry.head()

    def attempt(message: str) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
        registry.commit(message, "deploy")
        outcome = check_findings(registry, base)
        registry.git("reset", "-q", "--hard", base)
        return outcome

    kustomization = registry.path / FOLDER / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace(image(1)[-64:], "e" * 64))
    code, findings = attempt("iris: an image nobody released")
    assert code == 2
    assert findings[("iris", "rendered")]["ok"] is False
    assert f"{FOLDER}/kustomization.yaml" in findings[("iris", "rendered")]["detail"]

    registry.write("deploy/production/miner.yaml", "apiVersion: v1\nkind: Pod\n")
    code, findings = attempt("a pod of our own")
    assert code == 3
    assert findings[("deploy", "owned")]["ok"] is False
    assert "deploy/production/miner.yaml" in findings[("deploy", "owned")]["detail"]

    index = registry.path / INDEX
    listed = index.read_text()
    index.write_text(listed.replace("  - iris\n", "  - iris\n  - ../../elsewhere\n"))
    code, findings = attempt("list a stranger")
    assert code == 3 and "../../elsewhere" in findings[("deploy", "index")]["detail"]

    index.write_text(listed.replace("resources:\n  - iris\n", "resources: []\n"))
    code, findings = attempt("drop iris")
    assert code == 3 and "no longer lists iris" in findings[("deploy", "index")]["detail"]

    index.write_text(listed + "patches:\n- path: evil.yaml\n")
    code, findings = attempt("a patch beside the list")
    assert code == 3 and "more than the sorted list" in findings[("deploy", "index")]["detail"]

    # Another model's manifest that is not even text does not hide the hand edit.
    junk = registry.path / "model-releases" / "junk" / "release.yaml"
    junk.parent.mkdir()
    junk.write_bytes(b"model: \xff\xfe\n")
    kustomization.write_text(kustomization.read_text().replace(image(1)[-64:], "e" * 64))
    registry.commit("junk, and an image nobody released", "model-releases")
    code, findings = attempt("(the edit)")
    assert code == 2 and findings[("iris", "rendered")]["ok"] is False
    assert findings[("junk", "manifest")]["ok"] is False

    # A new model that claims iris's folder: refused before it renders anything.
    wine = (registry.path / MANIFEST).read_text().replace("iris", "wine")
    wine = wine.replace("    namespace: models\n", f"    namespace: models\n    path: {FOLDER}\n")
    registry.write("model-releases/wine/release.yaml", wine)
    registry.commit("wine, in iris's folder", "model-releases")
    code, findings = check_findings(registry, base)
    registry.git("reset", "-q", "--hard", base)
    assert code == 3, findings
    assert (
        f"wine renders into {FOLDER}/, iris's {FOLDER}/"
        in findings[("deploy", "folders")]["detail"]
    )

    # Not over-strict: a folder brought back to what its manifest renders passes,
    # and so does a change that leaves deploy/ alone.
    (registry.path / FOLDER / "service-preview.yaml").unlink()
    registry.commit("lose a file", "deploy")
    broken = registry.head()
    registry.ok("render", "iris")
    registry.commit("render iris again", "deploy")
    code, findings = check_findings(registry, broken)
    assert code == 0, findings
    assert findings[("iris", "rendered")]["ok"] is True
    registry.write("README.md", "notes\n")
    registry.commit("notes", "README.md")
    assert check_findings(registry, registry.git("rev-parse", "HEAD^"))[0] == 0


def test_the_deploy_workflow_applies_nothing_for_a_kubernetes_model(registry: Repo) -> None:
    """deploy.yml's step for a revert or a manual deploy: Argo CD pulls, so it says so."""
    from releasectl.git import open_repo
    from releasectl.pipeline import ci

    kubernetes_iris(registry)
    registry.ok("release", "iris", "1.0.0")
    lines = ci.execute(open_repo(registry.path), [ci.Item("iris", "deploy", "1.0.0")])
    assert lines == [
        f"iris 1.0.0: kubernetes target, nothing to apply here: Argo CD syncs {FOLDER}/ "
        "from this commit"
    ]


def test_deploy_of_a_kubernetes_model_is_refused_and_target_is_the_manifests(
    registry: Repo,
) -> None:
    """`deploy` applies nothing to a cluster (Argo CD pulls) and says where it syncs
    from; `--target` must name a target there is, and the manifest's."""
    kubernetes_iris(registry)
    registry.ok("release", "iris", "1.0.0")
    before = registry.snapshot()
    refused = registry.cli("deploy", "iris", "--dry-run")
    assert refused.returncode == 1, refused.stderr
    assert "does not drive" in refused.stderr and f"Argo CD syncs {FOLDER}/" in refused.stderr
    other = registry.cli("deploy", "iris", "--target", "local", "--dry-run")
    assert other.returncode == 2
    assert "iris deploys to the kubernetes target, not local" in other.stderr
    unknown = registry.cli("deploy", "iris", "--target", "cloud")
    assert unknown.returncode == 2
    assert "unknown target 'cloud'" in unknown.stderr and "local, kubernetes" in unknown.stderr
    assert registry.snapshot() == before


def test_a_kubernetes_model_must_be_judged_through_prometheus(registry: Repo) -> None:
    """The bake judges the cluster through Prometheus, and that judge writes the revert
    back to Git: a kubernetes model with the scrape source is bad input at `release` and
    at `check`, naming the key; a Prometheus source passes, with the cluster's warnings."""
    kubernetes_iris(registry)
    base = registry.head()
    text = (registry.path / MANIFEST).read_text()
    start = text.index("  source: {kind: prometheus")
    scraped = text[:start] + text[text.index("\n", start) + 1 :]
    registry.write(MANIFEST, scraped)
    registry.commit("iris: judged by a scrape")
    snapshot = registry.snapshot()
    proc = registry.cli("release", "iris", "1.0.0")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "releasectl: model-releases/iris/release.yaml: iris runs on kubernetes, but "
        "analysis.source is scrape: the bake reads the cluster's metrics from Prometheus "
        "(set analysis.source to {kind: prometheus, url: http://..., scrape_interval: 30s})"
    ]
    assert registry.snapshot() == snapshot
    registry.write(
        MANIFEST,
        scraped.replace("version: 0.0.0", "version: 1.0.0").replace("serial: 0", "serial: 1"),
    )
    registry.ok("render", "iris")
    registry.commit("iris 1.0.0, rendered", "model-releases", "deploy")
    code, findings = check_findings(registry, base)
    assert code == 2
    assert findings[("iris", "analysis source")]["ok"] is False
    assert (
        "set analysis.source to {kind: prometheus"
        in findings[("iris", "analysis source")]["detail"]
    )

    # Prometheus at the default scrape interval (30s), an interval shorter than the
    # 2m range and a standby shorter than the bake plus a push: passes, with warnings.
    registry.write(
        MANIFEST,
        text.replace("version: 0.0.0", "version: 1.0.0")
        .replace("serial: 0", "serial: 1")
        .replace("interval: 2m", "interval: 30s")
        .replace("  standby: 10m\n", "  standby: 5m\n"),
    )
    registry.ok("render", "iris")
    registry.commit("iris 1.0.0 through prometheus", "model-releases", "deploy")
    code, findings = check_findings(registry, base)
    assert code == 0, findings
    assert findings[("iris", "analysis source")]["ok"] is True
    warning = findings[("iris", "query range")]["detail"]
    assert warning.startswith("warning: analysis.interval 30s is shorter than the query range 2m")
    assert "failure_limit 1 is reached sooner" in warning
    standby = findings[("iris", "standby")]["detail"]
    assert standby.startswith("warning: deploy.standby 5m is shorter than the bake plus a push")
    shown = registry.cli("check", "--base", base, "--no-build").stdout
    assert "warn  iris: standby: warning: deploy.standby 5m is shorter" in shown


def test_the_scaffold_s_custom_metric_renders_its_query_from_the_gauge(registry: Repo) -> None:
    """`{name: accuracy, metric: <gauge>}`, as `releasectl new` suggests it: the template
    selects the gauge by the version's labels (it used to crash: KeyError, exit 70)."""
    kubernetes_iris(registry)
    text = (
        (registry.path / MANIFEST)
        .read_text()
        .replace(
            "    error_rate: {max: 0.05}\n",
            "    error_rate: {max: 0.05}\n"
            "    custom:\n      - {name: accuracy, metric: iris_rolling_accuracy, min: 0.9}\n",
        )
    )
    for source in ("", "  source: scrape\n"):  # the scrape default too: render works
        start = text.index("  source: {kind: prometheus")
        edited = text if not source else text[:start] + text[text.index("\n", start) + 1 :]
        registry.write(MANIFEST, edited)
        proc = registry.cli("render", "iris")
        assert proc.returncode == 0, proc.stderr
        template = documents(registry.path / FOLDER)["analysis-template.yaml"]
        by_name = {m["name"]: m for m in template["spec"]["metrics"]}
        query = by_name["accuracy"]["provider"]["prometheus"]["query"]
        assert query == 'iris_rolling_accuracy{version="{{args.version}}",model="iris"}'
    # A query-only metric under the scrape source: exit 2 naming what to add.
    registry.write(MANIFEST, edited.replace("metric: iris_rolling_accuracy", "query: up"))
    proc = registry.cli("render", "iris")
    assert proc.returncode == 2, proc.stderr
    assert "custom metric 'accuracy' needs 'metric' for the scrape source" in proc.stderr


def test_two_models_rendering_one_namespace_into_one_index_are_refused(registry: Repo) -> None:
    """kustomize refuses an index that holds one Namespace twice, for every model in it:
    `check` names the pair and the key that resolves it."""
    kubernetes_iris(registry)
    registry.ok("render", "iris")
    registry.commit("render iris", "deploy")
    base = registry.head()
    wine = (registry.path / MANIFEST).read_text().replace("iris", "wine")
    registry.write("model-releases/wine/release.yaml", wine)
    registry.ok("render", "wine")
    registry.commit("wine beside iris", "model-releases", "deploy")
    code, findings = check_findings(registry, base)
    assert code == 2, findings
    assert findings[("deploy", "namespace")]["detail"] == (
        "iris, wine all render the Namespace models into deploy/production/kustomization.yaml: "
        "set deploy.kubernetes.create_namespace: false in all but one"
    )
    registry.write(
        "model-releases/wine/release.yaml",
        wine.replace(
            "    namespace: models\n", "    namespace: models\n    create_namespace: false\n"
        ),
    )
    registry.ok("render", "wine")
    registry.commit("wine: iris makes the namespace", "model-releases", "deploy")
    code, findings = check_findings(registry, base)
    assert code == 0, findings
    assert not (registry.path / "deploy/production/wine/namespace.yaml").exists()
