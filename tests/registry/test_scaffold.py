"""`releasectl new`: a model named for its name from the template, or a copy
of another model renamed; refusals that write nothing. The slow half runs the
README's "Your own model in five minutes" as written, and a hand-made pull
request of that model that `check` sends to `release --dry-run` for its pin."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from ruamel.yaml import YAML

from releasectl.bundles.archive import extract
from releasectl.loopback import free_port
from releasectl.manifest.edits import edit, render_new
from releasectl.manifest.schema import load
from releasectl.registry.scaffold import TEMPLATE_PACKAGES, plan_new
from testing.bentos import IRIS_BUNDLE_FILES, IRIS_SRC
from testing.paths import ROOT
from testing.processes import env_home, state_home
from testing.repos import RELEASECTL, Repo, git, make_key
from testing.traffic import Load

WINE = "model-releases/wine"


def _yaml(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], YAML(typ="safe").load(path.read_text()))


def _everything(folder: Path) -> dict[str, bytes]:
    """Every file under folder, hidden ones included: what "nothing written" compares."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    }


# --- from the template ------------------------------------------------------------


def test_new_names_the_model_everywhere_and_watches_it(registry: Repo) -> None:
    out = registry.ok("new", "wine")
    folder = registry.path / WINE
    assert sorted(p.name for p in folder.iterdir()) == [
        "bentofile.yaml",
        "release.yaml",
        "service.py",
        "train.py",
    ]
    for path in folder.iterdir():
        assert "iris" not in path.read_text().lower(), f"{path.name} still says iris"
    service = (folder / "service.py").read_text()
    assert "class WineClassifier:" in service
    assert '@bentoml.service(name="wine"' in service
    assert 'MODEL_TAG = "wine_clf:v1"' in service and 'MODEL_NAME = "wine"' in service
    assert '"""The wine service' in service
    assert 'MODEL_TAG = "wine_clf:v1"' in (folder / "train.py").read_text()
    bentofile = _yaml(folder / "bentofile.yaml")
    assert bentofile["service"] == "service:WineClassifier"
    assert bentofile["models"] == ["wine_clf:v1"]
    manifest = load((folder / "release.yaml").read_text(), "release.yaml", model="wine")
    assert (manifest.model, manifest.version, manifest.serial) == ("wine", "0.0.0", 0)
    assert manifest.bundle.bento == "wine" and manifest.bundle.train == ["python", "train.py"]
    assert manifest.deploy.port == 3000
    # an analysis block with thresholds: what `check` demands of every pull request
    analysis = _yaml(folder / "release.yaml")["analysis"]
    assert analysis["metrics"] == {"error_rate": {"max": 0.05}, "latency_ms": {"p95": 250}}
    assert manifest.analysis.bake >= manifest.analysis.interval > 0
    assert "serves on 127.0.0.1:3000" in out
    # a second model takes the next free port
    registry.ok("new", "red-wine")
    red = load((registry.path / "model-releases/red-wine/release.yaml").read_text(), "r")
    assert red.deploy.port == 3001


def test_the_bentofile_pins_what_is_installed_when_new_runs(registry: Repo, tmp_path: Path) -> None:
    # A distribution found first on the path is what importlib.metadata reports
    # as installed: scikit-learn "9.9.9" here, not whatever the example pins.
    site = tmp_path / "site"
    info = site / "scikit_learn-9.9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scikit-learn\nVersion: 9.9.9\n")
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    proc = registry.cli("new", "wine", env={"PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr
    packages = _yaml(registry.path / WINE / "bentofile.yaml")["python"]["packages"]
    expected = {
        name: "9.9.9" if name == "scikit-learn" else importlib.metadata.version(name)
        for name in TEMPLATE_PACKAGES
    }
    assert dict(p.split("==") for p in packages) == expected
    assert {"bentoml", "scikit-learn", "numpy"} <= set(expected)


@pytest.mark.parametrize("name", ["a", "3d", "none", "faults", "feedback", "my-wine-2"])
def test_every_valid_name_renders_code_that_compiles(tmp_path: Path, name: str) -> None:
    plan = plan_new(tmp_path, name, port=3000)
    for rel in ("service.py", "train.py"):
        compile(plan.files[rel].decode(), rel, "exec")  # a SyntaxError fails the test
    service = plan.files["service.py"].decode()
    [cls] = re.findall(r"^class (\w+Classifier):", service, re.M)
    assert cls.isidentifier() and not cls[0].isdigit()
    [metric] = re.findall(r'name="(\w+_rolling_accuracy)"', service)
    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", metric)  # a valid Prometheus name
    manifest = plan.files["release.yaml"].decode()
    load(manifest, "release.yaml", model=name)
    # The gauge's own evidence: the service counts its labels, the manifest's
    # accuracy check (commented out until labels are sent) names that counter.
    prefix = metric.removesuffix("_rolling_accuracy")
    assert f'name="{prefix}_feedback"' in service
    enabled = load(
        manifest.replace("    # custom:", "    custom:").replace(
            f"    #   - {{name: accuracy, metric: {metric}, min: 0.9,\n    #      samples:",
            f"      - {{name: accuracy, metric: {metric}, min: 0.9,\n         samples:",
        ),
        "release.yaml",
        model=name,
    )
    assert enabled.analysis is not None
    [accuracy] = enabled.analysis.metrics.custom
    assert (accuracy.samples, accuracy.min_samples) == (f"{prefix}_feedback_total", 20)


def test_new_dry_run_lists_the_files_and_writes_nothing(registry: Repo) -> None:
    before = _everything(registry.path)
    out = registry.ok("new", "wine", "--dry-run")
    assert "would create model-releases/wine/ from the model template" in out
    assert "service.py" in out and "release.yaml" in out
    assert _everything(registry.path) == before


# --- the copies in this repository, against what init and new write -----------------


def test_init_writes_the_workflows_this_repository_runs(registry: Repo) -> None:
    """`.github/workflows` here is what `init` gives every registry (this
    repository is one, holding the iris example); publish.yml is the project's
    own. The package's templates are links to these files: a copy that drifts,
    or an `init` that writes something else, fails here."""
    written = registry.path / ".github/workflows"
    ours = {p.name for p in (ROOT / ".github/workflows").iterdir()} - {"publish.yml"}
    assert {p.name for p in written.iterdir()} == ours
    for name in sorted(ours):
        assert (written / name).read_bytes() == (ROOT / ".github/workflows" / name).read_bytes(), (
            f".github/workflows/{name} differs from what `releasectl init` writes"
        )


def _api(service: str) -> list[str]:
    """The service's HTTP endpoints, and the metrics it exports."""
    endpoints = re.findall(r"@bentoml\.api\s+def (\w+)\(", service)
    return endpoints + re.findall(r'bentoml\.metrics\.\w+\(\s*name="(\w+)"', service)


def test_new_iris_writes_what_the_iris_example_is_made_of(registry: Repo) -> None:
    """The iris example is a real model and `new` writes a placeholder one
    (docs/ARCHITECTURE.md, "New models"), but what the pipeline reads must not
    drift apart: the same files, the same release.yaml, the same bentofile but
    for the service's class and the pins, the same endpoints and metric."""
    registry.ok("new", "iris")
    new, example = registry.path / "model-releases/iris", ROOT / "model-releases/iris"
    assert sorted(p.name for p in new.iterdir()) == sorted(p.name for p in example.iterdir())
    assert _yaml(new / "release.yaml") == _yaml(example / "release.yaml")
    ours, theirs = _yaml(new / "bentofile.yaml"), _yaml(example / "bentofile.yaml")
    for doc in (ours, theirs):
        doc.pop("service")
        doc["python"].pop("packages")
    assert ours == theirs
    assert _api((new / "service.py").read_text()) == _api((example / "service.py").read_text())
    assert _api((example / "service.py").read_text()) == [
        "predict", "feedback", "iris_rolling_accuracy", "iris_feedback"
    ]  # fmt: skip


# --- from another model -------------------------------------------------------------


def _iris(repo: Repo) -> Path:
    """The real iris example in the registry, as if released three times
    (pins, serial, rollback) so that the copy has something to forget."""
    folder = repo.path / "model-releases/iris"
    folder.mkdir(parents=True)
    for name in IRIS_BUNDLE_FILES:
        (folder / name).write_text((IRIS_SRC / name).read_text())
    (folder / "data.bin").write_bytes(b"\xff\xfeiris\x00")
    manifest = (IRIS_SRC / "release.yaml").read_text()
    released = {
        "version": "1.2.0",
        "serial": 3,
        "bundle": {"digest": "sha256:" + "a" * 64, "archive": f"bundles/{'a' * 64}.bento"},
        "rollback": {
            "from": "1.3.0",
            "to": "1.2.0",
            "reason": "drill",
            "at": "2025-01-01T00:00:00Z",
            "by": "x@y",
        },
    }
    (folder / "release.yaml").write_text(edit(manifest, "release.yaml", released))
    repo.commit("iris")
    return folder


def test_from_copies_a_model_renamed_and_never_released(registry: Repo) -> None:
    iris = _iris(registry)
    out = registry.ok("new", "wine", "--from", "iris")
    folder = registry.path / WINE
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in iris.iterdir())
    manifest = load((folder / "release.yaml").read_text(), "release.yaml", model="wine")
    assert (manifest.version, manifest.serial, manifest.rollback) == ("0.0.0", 0, None)
    bundle = manifest.bundle
    assert bundle.bento == "wine"
    assert (bundle.digest, bundle.archive, bundle.trained) == (None, None, None)
    assert bundle.train == ["python", "train.py"]
    assert manifest.analysis.metrics.error_rate is not None  # iris's thresholds kept
    assert manifest.deploy.port == 3001  # iris has 3000
    service = (folder / "service.py").read_text()
    assert "class Wine:" in service and '@bentoml.service(name="wine"' in service
    assert 'MODEL_TAG = "wine_clf:v1"' in service and '"wine_rolling_accuracy"' in service
    train = (folder / "train.py").read_text()
    assert "from sklearn.datasets import load_iris" in train  # the data's name, not the model's
    assert _yaml(folder / "bentofile.yaml")["models"] == ["wine_clf:v1"]
    assert (folder / "data.bin").read_bytes() == b"\xff\xfeiris\x00"  # binary: as it was
    assert "copied model-releases/iris: iris renamed to wine in" in out
    assert (iris / "service.py").read_text() == (IRIS_SRC / "service.py").read_text()


def test_from_a_folder_outside_the_registry(registry: Repo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "churn"
    elsewhere.mkdir(parents=True)
    (elsewhere / "release.yaml").write_text(render_new("churn"))  # no analysis block
    (elsewhere / "churn_features.py").write_text("CHURN_WINDOW = 30  # churn days\n")
    registry.ok("new", "wine", "--from", str(elsewhere))
    folder = registry.path / WINE
    assert (folder / "wine_features.py").read_text() == "WINE_WINDOW = 30  # wine days\n"
    manifest = load((folder / "release.yaml").read_text(), "release.yaml", model="wine")
    assert manifest.analysis.metrics.latency_ms.p95 == 250  # the template's defaults added


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["new", "Wine"], "invalid model name 'Wine'"),
        (["new", "wine_"], "invalid model name 'wine_'"),
        (["new", "wine", "--from", "nope"], "--from nope: no model 'nope'"),
        (["new", "wine", "--from", "docs"], "has no release.yaml: not a model folder"),
        (["new", "iris"], "model-releases/iris already exists"),
        (["new", "wine", "--port", "80"], "80 is not in the range 1024<=x<=65535"),
    ],
)
def test_refusals_exit_2_and_write_nothing(registry: Repo, args: list[str], message: str) -> None:
    registry.add_model("iris")
    (registry.path / "docs").mkdir()
    before = _everything(registry.path)
    proc = registry.cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert _everything(registry.path) == before


def test_a_copy_that_fails_half_way_leaves_nothing(registry: Repo) -> None:
    folder = registry.path / "model-releases/iris"
    folder.mkdir(parents=True)
    (folder / "release.yaml").write_text(render_new("iris"))
    (folder / "a.txt").write_text("written first\n")
    # a legal name that is too long once each "iris" in it becomes the new name
    (folder / ("-".join(["iris"] * 50) + ".txt")).write_text("x\n")
    registry.commit("iris")
    before = _everything(registry.path)
    proc = registry.cli("new", "w" * 63, "--from", "iris")
    assert proc.returncode == 1, proc.stderr
    assert "cannot write model-releases/www" in proc.stderr and "nothing was written" in proc.stderr
    assert _everything(registry.path) == before
    left = sorted(p.name for p in (registry.path / "model-releases").iterdir())
    assert left == ["README.md", "iris"]  # no temporary folder either


# --- the README's five minutes, as written ------------------------------------------

# Every command of the README section "Your own model in five minutes" runs
# here, block by block, as the README writes it, with two changes for a
# shared test machine: the endpoint's port is a free one instead of 3000
# (`--port` added to `new`, the URL changed), and the edit step also shortens
# the analysis bake from a minute to seconds. If the section gains or loses a
# block, test_the_readme_section_is_what_this_test_runs fails: exercise it here.


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Your own model in five minutes")
    return readme[start : readme.index("\n## ", start + 1)]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), re.S)


FAST = {"interval": "2s", "bake": "6s", "min_requests": 5, "inconclusive_limit": 2}


@dataclass
class FiveMinutes:
    registry: Repo
    port: int
    outputs: list[str]
    predicted: dict[str, Any]


def _sh(script: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(RELEASECTL).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, f"{script}\n{proc.stderr[-3000:]}{proc.stdout[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def five_minutes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiveMinutes]:
    root = tmp_path_factory.mktemp("five-minutes")
    port = free_port()
    setup, new, release, ask, watch = _blocks("sh")
    train_edit, service_edit = _blocks("python")
    home = Path(os.environ["HOME"])
    key = make_key(home / ".ssh", "id_ed25519")  # "an SSH key to sign with"
    with state_home(root / "state"):
        try:
            outputs = [_sh(setup, root)]
            repo = Repo(root / "registry", key, "operator@example.test")
            outputs.append(_sh(new.replace("new wine", f"new wine --port {port}"), repo.path))
            # the edit step: the README's snippets in place of the placeholders
            train = repo.path / WINE / "train.py"
            code = train.read_text()
            placeholder = re.search(r"def load_data\(.*?\n\n\n", code, re.S)
            assert placeholder is not None
            snippet = train_edit.split("\n", 1)[1]  # without the "# file" comment line
            train.write_text(code.replace(placeholder.group(0), snippet + "\n\n"))
            service = repo.path / WINE / "service.py"
            names = service_edit.split("\n", 1)[1].strip()
            text = re.sub(r"^CLASS_NAMES = .*$", names, service.read_text(), flags=re.M)
            service.write_text(text)
            manifest = repo.path / WINE / "release.yaml"
            manifest.write_text(edit(manifest.read_text(), "release.yaml", {"analysis": FAST}))
            outputs.append(_sh(release, repo.path))
            url = f"http://127.0.0.1:{port}"
            answer = _sh(ask.replace("http://127.0.0.1:3000", url), repo.path)
            outputs.append(answer)
            with Load(url) as load:
                load.wait_for(5)
                outputs.append(_sh(watch, repo.path))
            yield FiveMinutes(repo, port, outputs, json.loads(answer))
        finally:
            (home / ".ssh" / "id_ed25519").unlink(missing_ok=True)
            (home / ".ssh" / "id_ed25519.pub").unlink(missing_ok=True)


def test_the_readme_section_is_what_this_test_runs() -> None:
    commands = [line for block in _blocks("sh") for line in block.splitlines() if line.strip()]
    assert commands == [
        "git init -b main registry && cd registry",
        "git config gpg.format ssh && git config user.signingkey ~/.ssh/id_ed25519",
        "releasectl init",
        "releasectl new wine",
        'git add model-releases/wine && git commit -S -m "wine: a first model"',
        "releasectl release wine 0.1.0",
        "releasectl deploy wine",
        "curl -s -X POST http://127.0.0.1:3000/predict -H 'content-type: application/json' "
        "-d '{\"features\": [13.2, 1.78, 2.14, 11.2]}'",
        "releasectl watch wine",
    ]
    assert len(_blocks("python")) == 2


@pytest.mark.slow
def test_new_wine_released_deployed_and_asked_says_wine(
    five_minutes: FiveMinutes, tmp_path: Path
) -> None:
    r = five_minutes.registry
    _, new, release, _, watch = five_minutes.outputs
    assert "created model-releases/wine/service.py" in new
    assert "released wine 0.1.0 (serial 1)" in release and "trained wine_clf:v1" in release
    assert f"wine 0.1.0 live at http://127.0.0.1:{five_minutes.port}" in release
    # the answer names the model, and the classes the edit gave it
    answer = five_minutes.predicted
    assert answer["model"] == "wine" and answer["version"] == "0.1.0"
    assert answer["label"] in ("barolo", "grignolino", "barbera")
    # the built bento is `wine`, serving WineClassifier with the wine_clf model
    pinned = _yaml(r.path / WINE / "release.yaml")["bundle"]["digest"]
    archive = env_home() / "artifacts" / "bundles" / f"{pinned.removeprefix('sha256:')}.bento"
    info = _yaml(extract(archive, tmp_path / "bento") / "bento.yaml")
    assert info["name"] == "wine" and info["version"] == "0.1.0"
    assert info["service"] == "service:WineClassifier"
    assert [m["tag"] for m in info["models"]] == ["wine_clf:v1"]
    # the watch passed and marked it stable
    assert "wine 0.1.0 passed: marked stable" in watch
    assert r.git("tag", "--list", "stable/wine/*") == "stable/wine/v0.1.0"


@pytest.mark.slow
def test_a_hand_made_pull_request_is_told_how_to_get_its_pin(five_minutes: FiveMinutes) -> None:
    r = five_minutes.registry
    # what a release of 0.2.0 on main would pin, printed by a dry run that writes nothing
    store = env_home() / "artifacts"
    before = (r.snapshot(), _everything(store))
    dry = json.loads(r.ok("release", "wine", "0.2.0", "--dry-run", "--json"))
    assert (r.snapshot(), _everything(store)) == before
    assert dry["trains"] is False and dry["digest"].startswith("sha256:")

    # a pull request made by hand: a code change, the manifest bumped, the old pin kept
    r.git("checkout", "-q", "-b", "by-hand")
    service = r.path / WINE / "service.py"
    service.write_text(service.read_text() + "\n# tuned by hand\n")
    manifest = r.path / WINE / "release.yaml"
    bump = {"version": "0.2.0", "serial": 2}
    manifest.write_text(edit(manifest.read_text(), "release.yaml", bump))
    r.commit("wine 0.2.0, by hand")
    proc = r.cli("check", "--base", "main", "--json")
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    [bundle] = [f for f in report["findings"] if f["check"] == "bundle"]
    assert (
        "run `releasectl propose wine 0.2.0` or `releasectl release wine 0.2.0 --dry-run` "
        "to print the digest this change builds to"
    ) in bundle["detail"]
    builds_to = report["digests"]["wine"]

    # the dry run on the pull request's branch prints that digest ...
    proc = r.cli("release", "wine", "0.2.0", "--dry-run")
    assert proc.returncode == 3 and f"has digest {builds_to}" in proc.stderr

    # ... and pinned, the pull request passes
    pin = {"bundle": {"digest": builds_to}}
    manifest.write_text(edit(manifest.read_text(), "release.yaml", pin))
    r.commit("wine: pin the digest the dry run printed")
    proc = r.cli("check", "--base", "main", "--json")
    assert proc.returncode == 0, proc.stdout
    proc = r.cli("release", "wine", "0.2.0", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"tag the merged commit\n  bundle {builds_to}" in proc.stdout

    # the digest the first dry run printed is the one the real release pins
    r.git("checkout", "-q", "main")
    released = json.loads(r.ok("release", "wine", "0.2.0", "--json"))
    assert released["digest"] == dry["digest"]
    git(r.path, "branch", "-q", "-D", "by-hand")
