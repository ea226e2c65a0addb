"""Lint the project's real workflows (.github/workflows/*.yml): zizmor's offline
audits, GitHub's workflow JSON Schema (check-jsonschema's vendored copy), and
the structural rules of our security policy, asserted by parsing.

The checkers are plain functions so the second half of this file can prove them
on inline good and bad workflows; the project's files are checked as a whole,
never through an empty parametrization, so missing workflows FAIL, never skip."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from testing.gha import is_pinned, load_workflow
from testing.paths import WORKFLOWS

BIN = Path(sys.executable).parent
# A job "pushes" when one of its steps runs `git push` or `releasectl … --push`.
PUSHES = re.compile(r"\bgit\s+push\b|\breleasectl\b[^\n]*\s--push\b")
# A job "runs model code" when it builds, serves or bakes a bundle: `releasectl build`,
# `deploy`, `watch`, `release` without --no-build (it trains), `ci deploy` without
# --push (it deploys; with --push it only tags), `… --deploy`, or bentoml itself.
MODEL_CODE = re.compile(
    r"\breleasectl\s+(?:build|deploy|watch)\b"
    r"|\breleasectl\s+release\b(?![^\n]*\s--no-build\b)"
    r"|\breleasectl\s+ci\s+deploy\b(?![^\n]*\s--push\b)"
    r"|\breleasectl\b[^\n]*\s--deploy\b"
    r"|\bbentoml\b"
)


def project_workflows(folder: Path = WORKFLOWS) -> list[Path]:
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]) if folder.is_dir() else []
    if not files:
        pytest.fail(f"the workflows are missing: no *.yml in {folder}", pytrace=False)
    return files


def zizmor(*files: Path) -> subprocess.CompletedProcess[str]:
    """Offline audits only; no config file, so nothing can be silenced wholesale
    (an inline `# zizmor: ignore[rule]` stays possible, visible and reviewable)."""
    argv = [str(BIN / "zizmor"), "--offline", "--no-config", "--no-progress"]
    argv += ["--color", "never", "--format", "plain", *map(str, files)]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def check_schema(*files: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    return subprocess.run([*argv, *map(str, files)], capture_output=True, text=True, check=False)


def _false(value: Any) -> bool:
    return value is False or str(value).lower() == "false"


def _triggers(doc: dict[str, Any]) -> list[str]:
    on = doc.get("on")
    if isinstance(on, dict):
        return [str(k) for k in on]
    return [str(e) for e in on] if isinstance(on, list) else [str(on)]


def _deploy_concurrency(where: str, conc: Any) -> list[str]:
    want = "concurrency: {group: <…model…-…environment…>, cancel-in-progress: false}"
    if not isinstance(conc, dict):
        return [f"{where}: a production deploy needs {want} (found {conc!r})"]
    group, found = str(conc.get("group", "")), []
    if "model" not in group.lower():
        found.append(f"{where}: concurrency group {group!r} does not contain the model")
    if "production" not in group and "environment" not in group.lower():
        found.append(f"{where}: concurrency group {group!r} does not contain the environment")
    if conc.get("cancel-in-progress") is not False:
        found.append(f"{where}: concurrency must set cancel-in-progress: false")
    return found


# `pip install` in any spelling; each must install a lock, every hash required.
PIP_INSTALL = re.compile(r"\b(?:pip3?|uv\s+pip)\s+install\b")
OTHER_INSTALLERS = re.compile(r"\b(?:pipx\s+install|uv\s+tool\s+install|uvx|pipx\s+run)\b")
_PIP_VALUE_OPTIONS = {
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--only-binary",
    "--no-binary", "--platform", "--python-version", "--implementation", "--abi",
    "--upgrade-strategy", "--src", "--progress-bar", "--log", "--cache-dir", "-C",
    "--config-settings", "--trusted-host", "--proxy", "--retries", "--timeout",
    "--exists-action", "--cert", "--client-cert", "--report", "--python", "-e", "--editable",
}  # fmt: skip


def install_violations(script: str) -> list[str]:
    """Each `pip install` must pass --require-hashes and install only requirement
    files (a lock): a package named on the command line (`pip install releasectl`,
    `"$SPEC"`, `-e .`) is looked up by name or built from an unhashed source."""
    found = []
    joined = re.sub(r"\\\n", " ", script)
    for command in re.split(r"&&|\|\||[;|\n]", joined):
        if OTHER_INSTALLERS.search(command):
            found.append(f"`{command.strip()}` installs without a hashed lock")
            continue
        match = PIP_INSTALL.search(command)
        if not match:
            continue
        try:
            words = shlex.split(command[match.end() :], comments=True)
        except ValueError:
            words = command[match.end() :].split()
        named, files, skip = [], [], False
        for word in words:
            if skip:
                skip = False
            elif word in _PIP_VALUE_OPTIONS:
                skip = True
                files += [word] if word in ("-r", "--requirement") else []
                named += [word] if word in ("-e", "--editable") else []
            elif word.startswith(("--requirement=", "-r")) and word not in ("-r",):
                files.append(word)
            elif not word.startswith("-"):
                named.append(word)
        what = f"`{command.strip()}`"
        if "--require-hashes" not in words:
            found.append(f"{what}: pip install without --require-hashes")
        if named or not files:
            found.append(f"{what}: pip install without a pinned, hashed source (a lock via -r)")
    return found


def _job_violations(name: str, job_id: str, job: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    where = f"{name}: job {job_id!r}"
    found = [] if "permissions" in job else [f"{where}: declares no permissions:"]
    if "uses" in job and not is_pinned(str(job["uses"])):
        found.append(f"{where}: uses {job['uses']!r} is not pinned to a full commit SHA")
    steps = job.get("steps") or []
    pushes = any(PUSHES.search(str(s.get("run", ""))) for s in steps)
    for index, step in enumerate(steps):
        label = f"{where} step {step.get('name') or step.get('id') or index!r}"
        uses = str(step.get("uses") or "")
        if uses and not is_pinned(uses):
            found.append(f"{label}: uses {uses!r} is not pinned to a full commit SHA")
        if "${{" in str(step.get("run", "")):
            found.append(f"{label}: run: contains ${{{{ … }}}}; pass values through env:")
        found += [f"{label}: {v}" for v in install_violations(str(step.get("run", "")))]
        persist = (step.get("with") or {}).get("persist-credentials")
        if uses.partition("@")[0] == "actions/checkout" and not _false(persist) and not pushes:
            found.append(
                f"{label}: actions/checkout must set persist-credentials: false "
                "(only a job that runs `git push` or `releasectl … --push` may keep them)"
            )
    found += _model_code_violations(where, job, doc)
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    if environment is not None and "production" in str(environment):
        found += _deploy_concurrency(where, job.get("concurrency", doc.get("concurrency")))
    return found


def _writes(permissions: Any) -> list[str]:
    if isinstance(permissions, str):
        return [permissions] if permissions == "write-all" else []
    return [f"{k}: {v}" for k, v in (permissions or {}).items() if v == "write"]


def _model_code_violations(where: str, job: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """A job that runs model code holds no secret and no write token: model code
    could read a key file or a persisted token (docs/ARCHITECTURE.md, "Trust")."""
    runs = [str(s.get("run", "")) for s in job.get("steps") or []]
    if not any(MODEL_CODE.search(r) for r in runs):
        return []
    what = f"{where} runs model code (build, deploy, watch)"
    found = []
    if "secrets." in f"{job}{doc.get('env') or ''}":
        found.append(f"{what} and references secrets: it must hold no signing key")
    if writes := _writes(job.get("permissions")):
        found.append(f"{what} and has write permissions {writes}: contents: read at most")
    if any(PUSHES.search(r) or "--signing" in r for r in runs):
        found.append(f"{what} and signs or pushes: sign and push in a job that runs no model code")
    return found


def policy_violations(doc: dict[str, Any], name: str) -> list[str]:
    """Every breach of our workflow security policy, one readable line each."""
    found = []
    if doc.get("permissions") != {}:
        found.append(
            f"{name}: top-level permissions must be {{}} (found {doc.get('permissions')!r})"
        )
    if "pull_request_target" in _triggers(doc):
        found.append(f"{name}: the pull_request_target trigger is not allowed")
    jobs = doc.get("jobs") or {}
    for job_id, job in jobs.items():
        found += _job_violations(name, job_id, job or {}, doc)
    keeping = [
        job_id
        for job_id, job in jobs.items()
        for step in (job or {}).get("steps") or []
        if str(step.get("uses", "")).partition("@")[0] == "actions/checkout"
        and not _false((step.get("with") or {}).get("persist-credentials"))
    ]
    if len(set(keeping)) > 1:
        found.append(
            f"{name}: jobs {sorted(set(keeping))} keep checkout credentials; "
            "at most one job per workflow (the one that pushes) may"
        )
    return found


# --- the project's workflows ----------------------------------------------------------


def test_workflows_exist() -> None:
    assert project_workflows()


def test_zizmor_offline_reports_no_findings() -> None:
    files = project_workflows()
    proc = zizmor(*files)
    assert proc.returncode == 0, f"zizmor exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_github_workflow_schema_accepts_each_file() -> None:
    failures = []
    for path in project_workflows():
        proc = check_schema(path)
        if proc.returncode != 0:
            failures.append(f"{path.name}:\n{proc.stdout}{proc.stderr}")
    assert not failures, "\n".join(failures)


def test_security_policy() -> None:
    violations = [
        v for p in project_workflows() for v in policy_violations(load_workflow(p), p.name)
    ]
    assert not violations, "policy violations:\n  " + "\n  ".join(violations)


def test_each_lock_a_workflow_installs_pins_every_distribution_by_hash() -> None:
    """Literal `-r FILE` paths (the shipped workflows' `$lock` is checked by
    tests/pipeline/test_supply_chain.py): the file exists, every requirement is `==`
    pinned and carries at least one sha256 hash."""
    root = WORKFLOWS.parents[1]
    locks = {
        word
        for path in project_workflows()
        for job in load_workflow(path)["jobs"].values()
        for step in job.get("steps") or []
        for words in [shlex.split(re.sub(r"\\\n", " ", str(step.get("run", ""))))]
        for flag, word in itertools.pairwise(words)
        if flag in ("-r", "--requirement") and not word.startswith("$")
    }
    assert locks == {".github/publish-tools.lock"}
    for lock in locks:
        text = (root / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        assert len(blocks) > 5
        for block in blocks:
            assert re.match(r"^[A-Za-z0-9._-]+==\S+ \\\n", block), block
            assert "--hash=sha256:" in block, block


# --- the checkers themselves, on inline workflows ------------------------------------------

CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
GOOD = f"""\
name: release
on:
  push:
    tags: ["release/**"]
permissions: {{}}
jobs:
  build:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    outputs:
      model: ${{{{ steps.parse.outputs.model }}}}
    steps:
      - uses: {CHECKOUT} # v4.2.2
        with:
          persist-credentials: false
      - id: parse
        env:
          REF_NAME: ${{{{ github.ref_name }}}}
        run: echo "model=$(echo "$REF_NAME" | cut -d/ -f2)" >> "$GITHUB_OUTPUT"
      - name: Install releasectl
        run: >-
          python -m pip install --quiet --require-hashes --no-deps
          --only-binary :all: -r .releasectl/requirements.lock
  deploy:
    needs: build
    runs-on: ubuntu-latest
    permissions:
      contents: read
    environment: production
    concurrency:
      group: deploy-${{{{ needs.build.outputs.model }}}}-production
      cancel-in-progress: false
    steps:
      - uses: {CHECKOUT} # v4.2.2
        with:
          persist-credentials: false
      - env:
          MODEL: ${{{{ needs.build.outputs.model }}}}
        run: releasectl deploy "$MODEL"
  mark-stable:
    needs: [build, deploy]
    runs-on: ubuntu-latest
    permissions:
      contents: write
    steps:
      - uses: {CHECKOUT} # zizmor: ignore[artipacked] v4.2.2; this job pushes
        with:
          fetch-depth: 0
      - env:
          MODEL: ${{{{ needs.build.outputs.model }}}}
        run: releasectl mark-stable "$MODEL" --push
"""

# (replace this, with that) in GOOD -> the violation policy_violations must report
BAD = {
    "top-permissions": (
        "permissions: {}\njobs:",
        "permissions: write-all\njobs:",
        "top-level permissions must be {}",
    ),
    "job-permissions": (
        "  build:\n    runs-on: ubuntu-latest\n    permissions:\n      contents: read\n",
        "  build:\n    runs-on: ubuntu-latest\n",
        "job 'build': declares no permissions:",
    ),
    "unpinned": (f"{CHECKOUT} # v4.2.2\n", "actions/checkout@v4\n", "is not pinned"),
    "pull-request-target": (
        'on:\n  push:\n    tags: ["release/**"]',
        "on: [push, pull_request_target]",
        "pull_request_target trigger is not allowed",
    ),
    "expression-in-run": (
        'run: releasectl deploy "$MODEL"',
        "run: releasectl deploy ${{ needs.build.outputs.model }}",
        "run: contains ${{",
    ),
    "persisted-credentials": (
        "persist-credentials: false\n      - id: parse",
        "fetch-depth: 1\n      - id: parse",
        "job 'build' step 0: actions/checkout must set persist-credentials: false",
    ),
    "two-jobs-keep-credentials": (
        'persist-credentials: false\n      - env:\n          MODEL: ${{ needs.build.outputs.model }}\n        run: releasectl deploy "$MODEL"',  # noqa: E501
        'persist-credentials: true\n      - env:\n          MODEL: ${{ needs.build.outputs.model }}\n        run: releasectl deploy "$MODEL" && git push',  # noqa: E501
        "jobs ['deploy', 'mark-stable'] keep checkout credentials",
    ),
    "no-concurrency": (
        "    concurrency:\n      group: deploy-${{ needs.build.outputs.model }}-production\n"
        "      cancel-in-progress: false\n",
        "",
        "a production deploy needs concurrency:",
    ),
    "group-without-model": (
        "group: deploy-${{ needs.build.outputs.model }}-production",
        "group: deploy-production",
        "does not contain the model",
    ),
    "group-without-environment": (
        "group: deploy-${{ needs.build.outputs.model }}-production",
        "group: deploy-${{ needs.build.outputs.model }}",
        "does not contain the environment",
    ),
    "cancel-in-progress": (
        "cancel-in-progress: false",
        "cancel-in-progress: true",
        "must set cancel-in-progress: false",
    ),
    # The job that runs model code holds no key and no write token (docs/ARCHITECTURE.md, "Trust").
    "key-beside-model-code": (
        '      - env:\n          MODEL: ${{ needs.build.outputs.model }}\n        run: releasectl deploy "$MODEL"',  # noqa: E501
        '      - env:\n          SIGNING_KEY: ${{ secrets.RELEASECTL_SIGNING_KEY }}\n        run: releasectl ci setup --signing\n      - env:\n          MODEL: ${{ needs.build.outputs.model }}\n        run: releasectl deploy "$MODEL"',  # noqa: E501
        "job 'deploy' runs model code (build, deploy, watch) and references secrets",
    ),
    "write-token-beside-model-code": (
        'run: releasectl mark-stable "$MODEL" --push',
        'run: releasectl watch "$MODEL" && releasectl mark-stable "$MODEL" --push',
        "job 'mark-stable' runs model code (build, deploy, watch) and has write permissions",
    ),
    "build-with-a-workflow-level-secret": (
        "permissions: {}\njobs:",
        "permissions: {}\nenv:\n  KEY: ${{ secrets.RELEASECTL_SIGNING_KEY }}\njobs:",
        "job 'deploy' runs model code (build, deploy, watch) and references secrets",
    ),
    # Nothing installed by name, nothing without hashes (docs/ARCHITECTURE.md, "Supply chain").
    "install-by-name": (
        'run: releasectl deploy "$MODEL"',
        'run: pip install releasectl && releasectl deploy "$MODEL"',
        "`pip install releasectl`: pip install without --require-hashes",
    ),
    "install-a-spec-variable": (
        'run: releasectl deploy "$MODEL"',
        'run: |\n          python -m pip install "$RELEASECTL_SPEC"\n          releasectl deploy "$MODEL"',  # noqa: E501
        'pip install "$RELEASECTL_SPEC"`: pip install without a pinned, hashed source',
    ),
    "lock-without-require-hashes": (
        "--quiet --require-hashes --no-deps",
        "--quiet --no-deps",
        "pip install without --require-hashes",
    ),
    "name-beside-a-lock": (
        "-r .releasectl/requirements.lock\n",
        "-r .releasectl/requirements.lock releasectl==1.0\n",
        "pip install without a pinned, hashed source",
    ),
    "editable-checkout": (
        "--only-binary :all: -r .releasectl/requirements.lock\n",
        "--only-binary :all: -r .releasectl/requirements.lock\n          -e .\n",
        "pip install without a pinned, hashed source",
    ),
    "uv-pip-unhashed": (
        'run: releasectl deploy "$MODEL"',
        'run: uv pip install --system -r requirements.txt; releasectl deploy "$MODEL"',
        "`uv pip install --system -r requirements.txt`: pip install without --require-hashes",
    ),
    "pipx": (
        'run: releasectl deploy "$MODEL"',
        'run: pipx install releasectl; releasectl deploy "$MODEL"',
        "`pipx install releasectl` installs without a hashed lock",
    ),
}


def _write(tmp_path: Path, text: str, name: str = "release.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_example_passes_every_check(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    assert policy_violations(load_workflow(path), path.name) == []
    proc = zizmor(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = check_schema(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("case", sorted(BAD))
def test_policy_reports_each_violation(tmp_path: Path, case: str) -> None:
    old, new, message = BAD[case]
    assert old in GOOD, f"the {case} example no longer applies to GOOD"
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    violations = policy_violations(load_workflow(path), path.name)
    assert any(message in v for v in violations), violations
    assert all(v.startswith("release.yml: ") for v in violations)


def test_production_as_mapping_and_workflow_level_concurrency(tmp_path: Path) -> None:
    text = GOOD.replace("environment: production", "environment:\n      name: production")
    doc = load_workflow(_write(tmp_path, text))
    assert policy_violations(doc, "x.yml") == []
    del doc["jobs"]["deploy"]["concurrency"]
    assert any("needs concurrency" in v for v in policy_violations(doc, "x.yml"))
    doc["concurrency"] = {
        "group": "deploy-${{ inputs.model }}-production",
        "cancel-in-progress": False,
    }
    assert policy_violations(doc, "x.yml") == []


def test_zizmor_reports_findings_offline(tmp_path: Path) -> None:
    bad = GOOD.replace(f"{CHECKOUT} # v4.2.2\n", "actions/checkout@v4\n", 1)
    bad = bad.replace('run: releasectl deploy "$MODEL"', 'run: echo "${{ github.head_ref }}"')
    proc = zizmor(_write(tmp_path, bad))
    assert proc.returncode != 0
    assert "unpinned-uses" in proc.stdout and "template-injection" in proc.stdout


def test_schema_rejects_an_invalid_workflow(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("    steps:\n", "    stepz:\n", 1))
    proc = check_schema(path)
    assert proc.returncode != 0 and "stepz" in proc.stdout


def test_missing_workflows_fail_instead_of_skipping(tmp_path: Path) -> None:
    for folder in (tmp_path / "absent", tmp_path):
        with pytest.raises(pytest.fail.Exception, match="the workflows are missing"):
            project_workflows(folder)
    _write(tmp_path, textwrap.dedent(GOOD), "ok.yml")
    assert project_workflows(tmp_path) == [tmp_path / "ok.yml"]
