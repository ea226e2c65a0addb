"""Weights are pinned inputs: `bundle.train` runs once when a release is made,
its models are stored by the sha256 of their bytes and pinned in the manifest,
and every build (a teammate's, CI's rebuild) imports those exact bytes, so the
same release builds to the same digest whatever numerical kernels a machine
picks. A rebuild that still differs names the files and says why.

Real git, real keys, real bentoml builds, a bare remote and two clones."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
from ruamel.yaml import YAML

from testing.bentos import team_registry
from testing.repos import RELEASECTL, Repo, clone

pytestmark = pytest.mark.slow

MANIFEST = "model-releases/iris/release.yaml"
# What a releaser's laptop and a CI runner differ in: the BLAS kernel OpenBLAS
# picks for the CPU, and the number of threads it splits the work over.
BLAS_A = {
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_L2_SIZE": "1048576",
    "OPENBLAS_NUM_THREADS": "1",
}
BLAS_B = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def run(
    repo: Repo, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """releasectl in `repo` with the BLAS settings of `env` only (the rest unset)."""
    base = {k: v for k, v in os.environ.items() if k not in BLAS_VARS and k != "RELEASECTL_STORE"}
    return subprocess.run(
        [RELEASECTL, *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        check=False,
    )


def ok(repo: Repo, *args: str, env: dict[str, str] | None = None) -> str:
    proc = run(repo, *args, env=env)
    assert proc.returncode == 0, f"releasectl {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def manifest_at(repo: Repo, rev: str) -> dict[str, Any]:
    return cast(dict[str, Any], YAML(typ="safe").load(repo.git("show", f"{rev}:{MANIFEST}")))


def teammate(tmp_path: Path, bare: Path, a: Repo) -> tuple[Repo, dict[str, str]]:
    """Clone B on 'another machine': its own HOME, state home and BentoML home."""
    b = clone(bare, tmp_path / "b", a.key, a.email)
    machine = tmp_path / "machine-b"
    env = {
        "HOME": str(machine),
        "RELEASECTL_HOME": str(machine / "releasectl"),
        "BENTOML_HOME": str(machine / "bentoml"),
    }
    machine.mkdir()
    return b, env


def test_a_release_trained_under_one_blas_rebuilds_to_its_pin_on_another_machine(
    tmp_path: Path,
) -> None:
    a, bare, store = team_registry(tmp_path)
    out = json.loads(ok(a, "release", "iris", "1.0.0", "--push", "--json", env=BLAS_A))
    pinned = manifest_at(a, "release/iris/v1.0.0")["bundle"]
    assert out["digest"] == pinned["digest"]
    [weights] = pinned["trained"]["models"]
    assert weights["tag"] == "iris_clf:v1"
    assert weights["key"] == f"weights/{weights['sha256']}.bentomodel"
    stored = store / weights["key"]
    assert stored.is_file()
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == weights["sha256"]
    assert not str(pinned["trained"]["models"]).count(str(tmp_path))  # store-relative key

    b, machine_b = teammate(tmp_path, bare, a)
    rebuilt = json.loads(
        ok(b, "build", "iris", "1.0.0", "--rebuild", "--json", env={**BLAS_B, **machine_b})
    )
    assert rebuilt["digest"] == pinned["digest"]
    assert rebuilt["reused"] is False


def test_training_runs_once_per_source_tree_and_on_request(tmp_path: Path) -> None:
    a, _, _ = team_registry(tmp_path)

    def weights(version: str) -> str:
        return str(
            manifest_at(a, f"release/iris/v{version}")["bundle"]["trained"]["models"][0]["sha256"]
        )

    ok(a, "release", "iris", "1.0.0")
    ok(a, "release", "iris", "1.1.0")
    # Same sources: the pinned weights are re-used, not trained again (a new
    # training would export other bytes: model.yaml carries its creation time).
    assert weights("1.1.0") == weights("1.0.0")
    service = a.path / "model-releases/iris/service.py"
    service.write_text(service.read_text() + "\n# a change to the sources\n")
    a.commit("iris: change the service")
    ok(a, "release", "iris", "1.2.0")
    assert weights("1.2.0") != weights("1.1.0")
    out = json.loads(ok(a, "release", "iris", "1.3.0", "--retrain", "--json"))
    assert weights("1.3.0") != weights("1.2.0")
    assert out["trained"]["models"][0]["sha256"] == weights("1.3.0")


def _prepare_step(a: Repo, script: str, body: str, *, train: bool = True) -> None:
    """Add a `prepare` step (script `body`) to the iris example, optionally
    without its `train` step (weights made in the build, the old way)."""
    folder = a.path / "model-releases/iris"
    (folder / script).write_text(body)
    manifest = folder / "release.yaml"
    text = manifest.read_text()
    if not train:
        text = text.replace("  train: [python, train.py]\n", "")
    manifest.write_text(
        text.replace("  bento: iris\n", f"  bento: iris\n  prepare: [python, {script}]\n")
    )
    bentofile = folder / "bentofile.yaml"
    bentofile.write_text(
        bentofile.read_text().replace(
            '  - "/faults.yaml"\n', '  - "/faults.yaml"\n  - "/noise.txt"\n'
        )
    )
    a.commit("iris: a prepare step")


def test_a_prepare_step_that_writes_other_bytes_fails_the_rebuild_and_names_the_file(
    tmp_path: Path,
) -> None:
    a, bare, store = team_registry(tmp_path)
    noise = "import os\nopen('noise.txt', 'w').write(os.urandom(16).hex())\n"
    _prepare_step(a, "noise.py", noise)
    ok(a, "release", "iris", "1.0.0", "--push")
    pinned = manifest_at(a, "release/iris/v1.0.0")["bundle"]
    sidecar = store / f"{pinned['archive']}.json"
    before = sidecar.read_bytes()
    b, machine_b = teammate(tmp_path, bare, a)
    proc = run(b, "build", "iris", "1.0.0", "--rebuild", env=machine_b)
    assert proc.returncode == 3, proc.stderr
    assert "src/noise.txt differs" in proc.stderr
    assert "bundle.prepare must write the same bytes on every machine" in proc.stderr
    assert "models/" not in proc.stderr
    # one line, and its hint (besides the progress lines of the build)
    errors = [line for line in proc.stderr.splitlines() if "building the bundle" not in line]
    assert len(errors) <= 2, proc.stderr
    assert sidecar.read_bytes() == before  # the stored build is left as it was


def test_weights_made_inside_the_build_are_named_with_the_fix(tmp_path: Path) -> None:
    a, bare, _ = team_registry(tmp_path)
    # The old way: weights saved by a build step (here random ones, standing in
    # for training that another CPU's kernels make differently).
    random_model = (
        "import os, bentoml\n"
        "bentoml.picklable_model.save_model('iris_clf:v1', {'w': os.urandom(16)})\n"
        "open('noise.txt', 'w').write('steady')\n"
    )
    _prepare_step(a, "weights.py", random_model, train=False)
    ok(a, "release", "iris", "1.0.0", "--push")
    b, machine_b = teammate(tmp_path, bare, a)
    proc = run(b, "build", "iris", "1.0.0", "--rebuild", env=machine_b)
    assert proc.returncode == 3, proc.stderr
    assert "models/iris_clf/v1/saved_model.pkl differs" in proc.stderr
    assert "weights built during the bundle build are not reproducible across machines" in (
        proc.stderr
    )
    assert "bundle.train" in proc.stderr


def test_pinned_weights_missing_from_the_store_or_altered_are_refused(tmp_path: Path) -> None:
    a, bare, store = team_registry(tmp_path)
    ok(a, "release", "iris", "1.0.0", "--push")
    key = manifest_at(a, "release/iris/v1.0.0")["bundle"]["trained"]["models"][0]["key"]
    b, machine_b = teammate(tmp_path, bare, a)

    elsewhere = {**machine_b, "RELEASECTL_STORE": str(tmp_path / "another-store")}
    missing = run(b, "build", "iris", "1.0.0", "--rebuild", env=elsewhere)
    assert missing.returncode == 1
    assert f"({key}) are not in the artifact store" in missing.stderr
    assert "store:" in missing.stderr  # the hint says where to point it
    assert "Traceback" not in missing.stderr

    blob = store / key
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    altered = run(b, "build", "iris", "1.0.0", "--rebuild", env=machine_b)
    assert altered.returncode == 3
    assert "expected" in altered.stderr and key.split("/")[1].split(".")[0] in altered.stderr


def test_a_train_step_that_saves_no_model_is_bad_input_and_writes_nothing(
    registry: Repo, tmp_path: Path
) -> None:
    registry.ok("new", "churn")
    (registry.path / "model-releases/churn/train.py").write_text("print('forgot to save')\n")
    registry.commit("churn: a train step that saves nothing")
    before = registry.snapshot()
    proc = registry.cli("release", "churn", "0.1.0")
    assert proc.returncode == 2, proc.stderr
    assert "bundle.train of churn saved no model" in proc.stderr
    assert registry.snapshot() == before


def test_new_scaffolds_the_train_once_pattern(registry: Repo) -> None:
    registry.ok("new", "wine")
    folder = registry.path / "model-releases/wine"
    assert (folder / "train.py").is_file() and not (folder / "prepare.py").exists()
    assert YAML(typ="safe").load((folder / "release.yaml").read_text())["bundle"]["train"] == [
        "python",
        "train.py",
    ]
    registry.commit("add wine")
    out = json.loads(registry.ok("release", "wine", "0.1.0", "--json"))
    [trained] = out["trained"]["models"]
    assert trained["key"] == f"weights/{trained['sha256']}.bentomodel"
    rebuilt = json.loads(registry.ok("build", "wine", "0.1.0", "--rebuild", "--json"))
    assert rebuilt["digest"] == out["digest"]
