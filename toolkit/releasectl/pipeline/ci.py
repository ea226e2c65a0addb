"""GitHub Actions glue: what an event means for the registry, and the files
Actions reads back (step outputs, job summary, annotations), escaped
(docs/ARCHITECTURE.md, "Crafted input"). The workflows stay thin: every
decision is made here, in code with tests.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from releasectl import git as g
from releasectl import view
from releasectl.errors import BadInput, Refused
from releasectl.git import ZERO
from releasectl.names import check_model, model_dir, parse_tag, tag_name
from releasectl.pipeline.check import changed_models
from releasectl.pipeline.check import summary_line as summary_line  # part of this module's API
from releasectl.pipeline.lock import LOCK_FILE, check_installed, read_source
from releasectl.registry.history import current
from releasectl.signing import SSH_FILE
from releasectl.text import one_line
from releasectl.view import trust_root

TRUST_REPOSITORY = "RELEASECTL_TRUST_REPOSITORY"


def in_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def _append(variable: str, text: str) -> None:
    path = os.environ.get(variable)
    if path:
        with Path(path).open("a") as handle:
            handle.write(text)


def set_output(name: str, value: str) -> None:
    """One step output; multi-line values use the heredoc form."""
    if "\n" in value:
        delim = f"EOF_{uuid.uuid4().hex}"
        _append("GITHUB_OUTPUT", f"{name}<<{delim}\n{value}\n{delim}\n")
    else:
        _append("GITHUB_OUTPUT", f"{name}={value}\n")


def summary(markdown: str) -> None:
    _append("GITHUB_STEP_SUMMARY", markdown.rstrip() + "\n\n")


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as the runner unescapes it: a
    line break in it can never end the command and start another."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ':' and ',', which end it."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def error_annotation(message: str, title: str = "releasectl", level: str = "error") -> str:
    """A workflow command that annotates the run (`level`: error or warning)."""
    return f"::{level} title={escape_property(title)}::{escape_data(message)}"


def code_span(text: str) -> str:
    """`text` as a Markdown code span whatever backticks it holds."""
    flat = one_line(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


@dataclass(frozen=True)
class Item:
    model: str
    kind: str  # release (a release tag), revert, untagged (a merged PR), deploy (manual)
    version: str

    def to_json(self) -> dict[str, str]:
        return {"model": self.model, "kind": self.kind, "version": self.version}


def event_payload() -> dict[str, Any]:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    payload: dict[str, Any] = json.loads(Path(path).read_text())
    return payload


def plan(git: g.Git) -> list[Item]:
    """What the current event asks the pipeline to do, model by model."""
    name = os.environ.get("GITHUB_EVENT_NAME", "")
    ref = os.environ.get("GITHUB_REF", "")
    sha = os.environ.get("GITHUB_SHA") or g.rev_parse(git, "HEAD") or "HEAD"
    payload = event_payload()
    if name == "push" and ref.startswith("refs/tags/"):
        tag = parse_tag(ref)
        return [Item(tag.model, "release", tag.version)] if tag and tag.kind == "release" else []
    if name == "push":
        before = payload.get("before") or ZERO
        if before == ZERO or g.rev_parse(git, before) is None:
            before = g.rev_parse(git, f"{sha}^") or sha
        return [
            _classify(git, model, sha)
            for model in changed_models(git, before, sha)
            if g.read_blob(git, sha, f"{model_dir(model)}/release.yaml") is not None
        ]
    if name == "workflow_dispatch":
        model = check_model(str((payload.get("inputs") or {}).get("model", "")))
        manifest, _ = current(git, model, sha)
        return [Item(model, "deploy", manifest.version)]
    raise BadInput(f"releasectl ci plan does not handle the event {name!r}")


def _classify(git: g.Git, model: str, sha: str) -> Item:
    from releasectl.registry.revert import revert_problem

    manifest, _ = current(git, model, sha)
    # Only a verified revert is fast-tracked; a rollback record and trailers
    # that anyone can write are not one (docs/ARCHITECTURE.md, "Revert").
    if (
        manifest.rollback is not None
        and revert_problem(git, trust_root(git, sha), model, sha, manifest) is None
    ):
        return Item(model, "revert", manifest.version)
    if g.tag_exists(git, tag_name("release", model, manifest.version)):
        return Item(model, "release", manifest.version)
    return Item(model, "untagged", manifest.version)


def publish_plan(items: list[Item]) -> None:
    include = [asdict(i) for i in items]
    set_output("matrix", json.dumps({"include": include}))
    set_output("count", str(len(items)))
    set_output("models", ",".join(sorted({i.model for i in items})))
    # Which jobs have work: the keyed one tags (untagged), the keyless one deploys.
    set_output("kinds", ",".join(sorted({i.kind for i in items})))
    if len(items) == 1:
        for key, value in include[0].items():
            set_output(key, value)
    rows = "\n".join(f"| {i.model} | {i.kind} | {i.version} |" for i in items)
    summary(
        "### releasectl plan\n\n| model | kind | version |\n|---|---|---|\n" + rows
        if items
        else "### releasectl plan\n\nNothing to do for this event."
    )


def setup(git: g.Git, *, signing: bool) -> list[str]:
    """Prepare a job: the trust root (and, for jobs that sign, the CI key)
    from the environment the workflow maps its secrets and variables into,
    written to files only this user can read. First of all, the running
    releasectl must be the one the lock pins. Returns what it did."""
    done = [installed_as_locked(git)]
    done += _uv_source(git)
    folder = Path(os.environ.get("RUNNER_TEMP") or git.cwd.parent) / "releasectl"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    allowed = os.environ.get("ALLOWED_SIGNERS", "").strip()
    if allowed:
        path = _private_file(folder / "allowed_signers", allowed + "\n")
        _append("GITHUB_ENV", f"RELEASECTL_ALLOWED_SIGNERS={path}\n")
        os.environ["RELEASECTL_ALLOWED_SIGNERS"] = str(path)
        done.append(f"trust root from ALLOWED_SIGNERS ({len(allowed.splitlines())} signer(s))")
    elif os.environ.get(TRUST_REPOSITORY) == "1":
        # An explicit choice (docs/ARCHITECTURE.md, "Trust"): never a silent fallback.
        done.append(f"trust root: the repository's {SSH_FILE} ({TRUST_REPOSITORY}=1)")
    else:
        raise Refused(
            "no trust root: ALLOWED_SIGNERS is empty",
            "set the RELEASECTL_ALLOWED_SIGNERS variable, or "
            f"{TRUST_REPOSITORY}=1 to trust the repository's {SSH_FILE}",
        )
    if signing:
        key = os.environ.get("SIGNING_KEY", "").strip()
        email = os.environ.get("SIGNER_EMAIL", "").strip()
        if not key or not email:
            raise BadInput(
                "this job signs, but SIGNING_KEY or SIGNER_EMAIL is empty",
                "set the RELEASECTL_SIGNING_KEY secret and the RELEASECTL_CI_EMAIL variable",
            )
        path = _private_file(folder / "signing_key", key + "\n")
        for setting, value in (
            ("gpg.format", "ssh"),
            ("user.signingkey", str(path)),
            ("user.email", email),
            ("user.name", "releasectl CI"),
        ):
            git.run("config", "--local", setting, value)
        done.append(f"signing as {email}")
    return done


def _lock_text(git: g.Git) -> str:
    """The lock the install step used (RELEASECTL_LOCK), else the committed one."""
    named = os.environ.get("RELEASECTL_LOCK")
    if named:
        path = Path(named)
        if not path.is_file():
            raise Refused(f"RELEASECTL_LOCK names {named}, which does not exist")
        return path.read_text()
    # Through the verified view: a lock an admin did not sign is refused
    # before anything is installed from it (docs/ARCHITECTURE.md, "Trust").
    text = view.read(git, "HEAD", LOCK_FILE)
    if text is None:
        raise Refused(
            f"no {LOCK_FILE}: the workflows run only the releasectl a lock pins by hash",
            "run `releasectl upgrade-workflows --index-url URL` or `--find-links DIR`, "
            "then commit the lock",
        )
    return text


def installed_as_locked(git: g.Git) -> str:
    """The running releasectl and its dependencies are what the lock pins."""
    return check_installed(_lock_text(git), LOCK_FILE)


UV_SOURCES = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS", "UV_NO_INDEX")


def _uv_source(git: g.Git) -> list[str]:
    """A bento's own environment is made by uv when it is served: in CI from the
    source the lock names (docs/ARCHITECTURE.md, "Supply chain"), unless the job
    names uv's source itself. Later steps of the job get it through GITHUB_ENV."""
    if any(os.environ.get(name) for name in UV_SOURCES):
        return ["bento environments: uv's source as this job sets it"]
    source = read_source(_lock_text(git))
    for name, value in source.uv_env().items():
        _append("GITHUB_ENV", f"{name}={value}\n")
        os.environ[name] = value
    return [f"bento environments from the lock's source ({source.describe()})"]


def _private_file(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
    return path


def _deploy_here(git: g.Git, model: str, version: str) -> str:
    """deploy.yml's line for a revert or a manual deploy of `model`. The target
    decides whether anything is applied here, so it is taken only from the state
    the verified view vouches for (docs/ARCHITECTURE.md, "Trust"), and that state
    is what is deployed (resolved once)."""
    from releasectl.serving import targets
    from releasectl.serving.deploy import trusted

    state = trusted(git, model)
    target = targets.of(state.manifest)
    folder = target.renders()
    if folder is not None:
        # Argo CD pulls (docs/ARCHITECTURE.md, "Kubernetes").
        return (
            f"{model} {version}: {target.kind} target, nothing to apply "
            f"here: Argo CD syncs {folder}/ from this commit"
        )
    result = targets.deploy(git, model, state=state)
    track = " on the fast track (a revert: no bake)" if result.fast_track else ""
    return f"{model} {result.version} deployed{track}, {result.switch} switch"


def execute(git: g.Git, items: list[Item], *, push: bool = False) -> list[str]:
    """deploy.yml's work, model by model; returns one summary line each.

    Without `push` (the job that runs model code, with no key and no write
    token) it deploys reverts and manual deploys; with `push` (the job that
    holds the key and runs no model code) it only tags merged releases and
    deploys nothing (docs/ARCHITECTURE.md, "Trust")."""
    from releasectl.registry.release import release

    lines = []
    for item in items:
        if item.kind in ("revert", "deploy") and push:
            lines.append(
                f"{item.model} {item.version}: a {item.kind}, NOT deployed here: a job that "
                "signs and pushes runs no model code; `releasectl ci deploy` (no --push) "
                "in a job without the key deploys it"
            )
        elif item.kind in ("revert", "deploy"):
            lines.append(_deploy_here(git, item.model, item.version))
        elif item.kind == "untagged" and not push:
            lines.append(
                f"{item.model} {item.version}: a merged release without a tag; "
                "run with --push to tag it"
            )
        elif item.kind == "untagged":
            _, landed = release(git, item.model, item.version, push=True, build=False)
            lines.append(
                f"{item.model} {item.version} tagged ({landed.tags[0]}); "
                "release.yml builds, deploys and watches it"
            )
        else:
            lines.append(f"{item.model} {item.version}: a release tag; release.yml deploys it")
    summary("### releasectl deploy\n\n" + "\n".join(f"- {summary_line(x)}" for x in lines))
    return lines
