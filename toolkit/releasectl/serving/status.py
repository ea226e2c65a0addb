"""What `status` and `agent status|start|stop` report: typed results, each with
the one serialisation `--json` prints and the text printer reads
(docs/ARCHITECTURE.md, "The command line").

A read starts nothing: a stopped agent is reported from its record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from releasectl.config import home
from releasectl.serving import outcomes, watcher

if TYPE_CHECKING:
    from releasectl.serving.local import ModelStatus
    from releasectl.serving.local.client import Stopped
    from releasectl.serving.local.state import AgentInfo


@dataclass(frozen=True)
class ModelReport:
    """One model on the local target, its detached watcher and what it concluded."""

    status: ModelStatus
    watcher: dict[str, Any] | None  # `serving.watcher.detached`
    outcome: outcomes.WatchOutcome | None
    promoted: outcomes.Promoted | None = None  # `releasectl promote` of its canary

    def to_json(self) -> dict[str, Any]:
        return {
            **self.status.model_dump(mode="json"),
            "watcher": self.watcher,
            "watch_outcome": self.outcome.model_dump(mode="json") if self.outcome else None,
            "promoted": self.promoted.model_dump(mode="json") if self.promoted else None,
        }


@dataclass(frozen=True)
class StatusReport:
    """`status`: whether the agent runs, and each model as it serves it (or as
    last recorded, when it does not run)."""

    running: bool
    models: list[ModelReport]

    def to_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.models]


def status(model: str | None = None) -> StatusReport:
    from releasectl.serving.local import LocalTarget

    target = LocalTarget(home())
    running = target.running()
    models = [
        ModelReport(
            s, watcher.detached(s.model), outcomes.load(s.model), outcomes.load_promoted(s.model)
        )
        for s in target.status(model, start=False)
    ]
    return StatusReport(running, models)


def _agent_json(info: AgentInfo) -> dict[str, Any]:
    return {"pid": info.pid, "url": info.url, "started": info.started.isoformat()}


@dataclass(frozen=True)
class AgentReport:
    """`agent status`: not running; running but not reachable (its record is
    stale or it does not answer: it can only be stopped, by `pid`); or running,
    with what it serves."""

    running: bool
    pid: int | None = None
    info: AgentInfo | None = None
    models: list[ModelStatus] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        if not self.running:
            return {"running": False}
        if self.info is None:
            return {"running": True, "pid": self.pid, "reachable": False}
        serving = [
            {
                "model": s.model,
                "health": s.health,
                "live": s.live.version if s.live else None,
                "standby": s.standby.version if s.standby else None,
            }
            for s in self.models
        ]
        return {"running": True, **_agent_json(self.info), "reachable": True, "models": serving}


def agent_status() -> AgentReport:
    from releasectl.serving.local import LocalTarget

    target = LocalTarget(home())
    info = target.agent()
    if info is None:
        stale = target.unreachable()
        return AgentReport(running=stale is not None, pid=stale)
    return AgentReport(True, info.pid, info, target.status(start=False))


@dataclass(frozen=True)
class AgentStarted:
    """`agent start`: the agent, and whether this call started it."""

    info: AgentInfo
    started_now: bool

    def to_json(self) -> dict[str, Any]:
        return {**_agent_json(self.info), "started_now": self.started_now}


def agent_start() -> AgentStarted:
    from releasectl.serving.local import LocalTarget

    return AgentStarted(*LocalTarget(home()).start())


@dataclass(frozen=True)
class AllStopped:
    """`agent stop`: the detached watchers, then the agent and its servers."""

    watchers: list[dict[str, Any]]  # `serving.watcher.stop_detached`
    stopped: Stopped

    @property
    def nothing(self) -> bool:
        return self.stopped.nothing and not self.watchers

    def to_json(self) -> dict[str, Any]:
        s = self.stopped
        return {
            "agent": s.agent,
            "servers": [
                {"model": m, "role": role, "version": v, "pid": pid}
                for m, role, v, pid in s.servers
            ],
            "watchers": self.watchers,
            "strays": s.strays,
        }


def stop_everything() -> AllStopped:
    from releasectl.serving.local import LocalTarget

    watchers = watcher.stop_detached()
    return AllStopped(watchers, LocalTarget(home()).stop())
