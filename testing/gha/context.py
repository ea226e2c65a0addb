"""One run's state and the `github`, `runner` and `steps` contexts its expressions see."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing.gha.actions import StepContext
from testing.gha.expressions import prop, to_str
from testing.gha.results import JobResult, StepResult
from testing.gha.triggers import Event

FAKE_TOKEN = "ghs_local_stand_in_token"  # a placeholder, never a credential


@dataclass
class Run:
    doc: dict[str, Any]
    event: Event
    remote: Path
    root: Path
    secrets: dict[str, str]
    vars: dict[str, str]
    env: dict[str, str]
    actions: dict[str, Callable[[StepContext], dict[str, str]]]
    inputs: dict[str, Any]
    run_id: int
    github: dict[str, Any]
    jobs: dict[str, JobResult] = field(default_factory=dict)
    workflow_env: dict[str, str] = field(default_factory=dict)

    def mask(self, text: str, extra: list[str]) -> str:
        for secret in sorted({*self.secrets.values(), FAKE_TOKEN, *extra}, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text


def github_context(
    doc: dict[str, Any], event: Event, remote: Path, run_id: int, inputs: dict[str, Any]
) -> dict[str, Any]:
    repository = prop(prop(event.payload, "repository"), "full_name") or f"local/{remote.stem}"
    ref_name = event.ref.split("/", 2)[-1] if event.ref.startswith("refs/") else event.ref
    payload = {
        **event.payload,
        "repository": {**(event.payload.get("repository") or {}), "full_name": repository},
    }
    if event.name == "workflow_dispatch":
        payload["inputs"] = {k: to_str(v) for k, v in inputs.items()}  # defaults applied
    return {
        "event_name": event.name,
        "event": payload,
        "ref": event.ref,
        "ref_name": ref_name,
        "ref_type": "tag" if event.ref.startswith("refs/tags/") else "branch",
        "sha": event.sha,
        "repository": repository,
        "repository_owner": repository.split("/")[0],
        "run_id": str(run_id),
        "run_number": "1",
        "run_attempt": "1",
        "actor": "local-runner",
        "triggering_actor": "local-runner",
        "workflow": doc.get("name") or "",
        "base_ref": event.base_ref,
        "head_ref": event.head_ref,
        "token": FAKE_TOKEN,
        "server_url": "https://github.com",
        "api_url": "https://api.github.com",
        "action": "",
        "job": "",
        "workspace": "",
    }


def runner_context(temp: Path) -> dict[str, str]:
    return {
        "os": "Linux",
        "arch": "X64",
        "name": "local-stand-in",
        "temp": str(temp),
        "tool_cache": str(temp / "_tool"),
        "debug": "",
    }


def steps_context(steps: list[StepResult]) -> dict[str, Any]:
    return {
        s.id: {"outputs": s.outputs, "outcome": s.outcome, "conclusion": s.conclusion}
        for s in steps
        if s.id
    }
