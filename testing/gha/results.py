"""What a run returns: per step, per job and per run, and every `uses:` and whether
it is pinned."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHA40 = re.compile(r"[0-9a-f]{40}")  # a full commit id


@dataclass
class StepResult:
    job: str
    id: str | None
    name: str
    outcome: str  # success | failure | skipped (before continue-on-error)
    conclusion: str  # after continue-on-error
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""
    summary: str = ""
    uses: str | None = None
    pinned: bool | None = None  # None for run: steps
    inputs: dict[str, str] = field(default_factory=dict)  # evaluated with:
    annotations: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class JobResult:
    id: str
    name: str
    conclusion: str  # success | failure | skipped
    outcome: str
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    env: dict[str, str] = field(default_factory=dict)  # env context at job end
    permissions: Any = None  # as declared on the job (None: not declared)
    concurrency: dict[str, Any] | None = None  # {"group": str, "cancel-in-progress": …}
    environment: dict[str, str] | None = None  # {"name": …, "url": …}
    runs_on: Any = None
    annotations: list[tuple[str, str]] = field(default_factory=list)
    workspace: Path | None = None
    temp: Path | None = None  # the job's RUNNER_TEMP, kept after the run for inspection


@dataclass
class UsesRef:
    job: str
    step: str | None  # None for a job-level (reusable workflow) uses:
    uses: str
    pinned: bool


@dataclass
class RunResult:
    conclusion: str  # success | failure
    jobs: dict[str, JobResult]
    name: str = ""
    permissions: Any = None
    concurrency: dict[str, Any] | None = None
    uses: list[UsesRef] = field(default_factory=list)  # every uses: in the file, run or not

    def step(self, job: str, id_or_name: str) -> StepResult:
        steps = self.jobs[job].steps
        found = [s for s in steps if s.id == id_or_name] or [
            s for s in steps if s.name == id_or_name
        ]
        if not found:
            raise KeyError(
                f"no step {id_or_name!r} in job {job!r}: {[s.id or s.name for s in steps]}"
            )
        return found[0]


def is_pinned(uses: str) -> bool:
    """Pinned = a full 40-hex commit SHA; local actions are pinned by the checkout."""
    if uses.startswith("./"):
        return True
    if uses.startswith("docker://"):
        return "@sha256:" in uses
    return bool(SHA40.fullmatch(uses.partition("@")[2]))


def static_uses(doc: dict[str, Any]) -> list[UsesRef]:
    found = []
    for job_id, spec in (doc.get("jobs") or {}).items():
        spec = spec or {}
        if "uses" in spec:
            found.append(UsesRef(job_id, None, str(spec["uses"]), is_pinned(str(spec["uses"]))))
        for step in spec.get("steps") or []:
            if "uses" in step:
                found.append(
                    UsesRef(
                        job_id,
                        step.get("id") or step.get("name"),
                        str(step["uses"]),
                        is_pinned(str(step["uses"])),
                    )
                )
    return found
