"""Telling someone: the notification hook a watcher fires on every outcome
other than "passed" (docs/ARCHITECTURE.md, "Unattended rollback").

Configured for the whole registry in `.releasectl/config.yaml`, as committed
(reviewed like code, never from a model's folder, which a pull request edits):

    notify:
      command: [/usr/local/bin/page-oncall, --team, ml]   # argv, no shell
      webhook: https://hooks.example.com/releasectl        # POST, JSON body
      timeout: 10s

The command gets the outcome as one JSON document on stdin; the webhook gets
it as the body. Each is tried once, with the timeout; a failure is recorded in
the outcome (and logged), never raised: a notification that cannot be sent
must not stop the rollback it reports."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from releasectl import git as g
from releasectl.config import settings
from releasectl.errors import BadInput
from releasectl.serving.outcomes import Delivery


class NotifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: list[str] | None = Field(default=None, min_length=1)
    webhook: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        from releasectl.manifest.durations import parse_duration

        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        return value


def load(git: g.Git) -> NotifySpec | None:
    """The registry's hook, or None. A malformed block is bad input, said at the
    start of a watch, not discovered when a release fails."""
    block = settings(git).get("notify")
    if block is None:
        return None
    try:
        return NotifySpec.model_validate(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(
            f".releasectl/config.yaml: notify{'.' + where if where else ''}: {first['msg']}",
            "see `notify:` in the README",
        ) from None


def send(spec: NotifySpec | None, document: dict[str, Any]) -> list[Delivery]:
    if spec is None:
        return []
    body = json.dumps(document, default=str)
    sent: list[Delivery] = []
    if spec.command:
        sent.append(_run(spec.command, body, spec.timeout))
    if spec.webhook:
        sent.append(_post(spec.webhook, body, spec.timeout))
    return sent


def _run(argv: list[str], body: str, timeout: float) -> Delivery:
    try:
        proc = subprocess.run(
            argv, input=body, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Delivery(via="command", ok=False, detail=f"{argv[0]}: {exc}")
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return Delivery(
            via="command", ok=False, detail=f"{argv[0]} exited {proc.returncode} {' '.join(last)}"
        )
    return Delivery(via="command", ok=True, detail=argv[0])


def _post(url: str, body: str, timeout: float) -> Delivery:
    import httpx

    try:
        response = httpx.post(
            url,
            content=body,
            headers={"content-type": "application/json", "user-agent": "releasectl"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        return Delivery(via="webhook", ok=False, detail=f"{url}: {exc}")
    if response.status_code >= 300:
        return Delivery(via="webhook", ok=False, detail=f"{url}: HTTP {response.status_code}")
    return Delivery(via="webhook", ok=True, detail=url)
