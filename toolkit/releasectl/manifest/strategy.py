"""The `deploy.strategy` block of a release manifest: how a new version takes
traffic, on either target (docs/ARCHITECTURE.md, "Deployment strategies").

Target-neutral: blue-green (the default), canary steps (mirror, then
weights) and a plain Deployment (kubernetes only). The rules that need the
rest of the manifest (a kind per target, steps that fit in the bake,
`analysis.compare` that needs a mirror step) are `check_strategy`; `moved`
refuses the old `deploy.kubernetes.strategy`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from releasectl.errors import BadInput
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import Duration, format_duration

Kind = Literal["bluegreen", "canary", "deployment"]
KINDS: tuple[str, ...] = get_args(Kind)

# A route the endpoint serves, written as a smoke request's path is.
ROUTE_RE = re.compile(r"/[A-Za-z0-9._~/-]{0,199}")
# RFC 9110's field-name: a token (tchar+).
HEADER_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}")
Percent = Annotated[int, Field(ge=1, le=100, strict=True)]

# The labels users send back: copying one would count it twice (docs/ARCHITECTURE.md,
# "Deployment strategies").
FEEDBACK = "/feedback"


class _Strict(BaseModel):
    # No populate_by_name: `for` is the only spelling a manifest may use.
    model_config = ConfigDict(extra="forbid")


class StrategyStep(_Strict):
    """One canary step: exactly one of `mirror` (the share of live requests on
    `mirror_routes` copied to the candidate; users get the stable answer) or
    `weight` (the share of live requests the candidate answers), held `for` a
    duration."""

    mirror: Percent | None = Field(default=None, description="% of live requests copied")
    weight: Percent | None = Field(default=None, description="% of live requests answered")
    for_: Duration = Field(alias="for")

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, data: Any) -> Any:
        named = [
            k for k in ("mirror", "weight") if isinstance(data, dict) and data.get(k) is not None
        ]
        if isinstance(data, dict) and len(named) != 1:
            raise ValueError(
                "a step is {mirror: P, for: D} or {weight: P, for: D}: "
                + ("not both" if named else "name mirror or weight")
            )
        return data

    @property
    def kind(self) -> Literal["mirror", "weight"]:
        return "mirror" if self.mirror is not None else "weight"

    @property
    def percent(self) -> int:
        value = self.mirror if self.mirror is not None else self.weight
        assert value is not None  # _one_of made sure
        return value

    @property
    def seconds(self) -> float:
        return self.for_


class StrategySpec(_Strict):
    """`deploy.strategy`: the one place a model's deployment strategy is written."""

    kind: Kind = Field(
        default="bluegreen",
        description="bluegreen: the candidate takes all traffic once ready, the previous "
        "version kept warm; canary: the steps below; deployment: a plain Deployment "
        "(kubernetes only)",
    )
    mirror_routes: list[Annotated[str, Strict()]] | None = Field(
        default=None,
        description="The routes copied to the candidate during a mirror step; never /feedback",
    )
    client_key: Annotated[str, Strict()] | None = Field(
        default=None,
        description="An HTTP header: requests with the same value stay on one side of a split",
    )
    steps: list[StrategyStep] | None = Field(
        default=None,
        description="canary: mirror and weight steps in order; then 100% for the rest of the bake",
    )

    @field_validator("mirror_routes")
    @classmethod
    def _routes(cls, routes: list[str] | None) -> list[str] | None:
        for route in routes or []:
            if not ROUTE_RE.fullmatch(route):
                raise ValueError(
                    f"{route!r} is not a route: write it as /predict, with its leading /"
                )
            if route.rstrip("/").lower() == FEEDBACK or route.lower().startswith(FEEDBACK + "/"):
                raise ValueError(f"{route} is never mirrored: feedback must never be copied")
        twice = sorted({r for r in routes or [] if (routes or []).count(r) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed twice")
        return routes

    @field_validator("client_key")
    @classmethod
    def _header(cls, key: str | None) -> str | None:
        if key is not None and not HEADER_RE.fullmatch(key):
            raise ValueError(
                f"{key!r} is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
            )
        return key

    @model_validator(mode="after")
    def _check(self) -> StrategySpec:
        if self.kind != "canary":
            given = [
                k for k in ("steps", "mirror_routes", "client_key") if getattr(self, k) is not None
            ]
            if given:
                are = "is" if len(given) == 1 else "are"
                raise ValueError(
                    f"{', '.join(given)} {are} only for kind: canary (kind is {self.kind})"
                )
            return self
        if not self.steps:
            raise ValueError(
                "kind canary needs at least one step: {mirror: P, for: D} or {weight: P, for: D}"
            )
        if self.mirrors and not self.mirror_routes:
            raise ValueError(
                "a mirror step needs mirror_routes, the routes to copy (e.g. [/predict])"
            )
        weight = 0
        for n, step in enumerate(self.steps, 1):
            # A mirror step serves users nothing from the candidate: weight 0.
            now = step.weight or 0
            if now < weight:
                what = "a mirror step" if step.mirror is not None else f"weight {now}"
                raise ValueError(
                    f"step {n}: {what} after weight {weight}: the weight never goes down"
                )
            weight = now
        return self

    @property
    def mirrors(self) -> bool:
        return any(s.mirror is not None for s in self.steps or [])

    @property
    def seconds(self) -> float:
        """The steps' durations, summed (0 without steps)."""
        return sum(s.for_ for s in self.steps or [])


class _Step(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def percent(self) -> int: ...
    @property
    def seconds(self) -> float: ...


def steps_text(steps: Iterable[_Step]) -> str:
    """`mirror 100% for 30s, weight 10% for 30s`: a canary's steps in one line, the
    manifest's (`StrategyStep`) or the agent's (`PlannedStep`) alike."""
    return ", ".join(f"{s.kind} {s.percent}% for {format_duration(s.seconds)}" for s in steps)


def check_strategy(strategy: StrategySpec, target: str, analysis: AnalysisSpec) -> None:
    """The rules that need the rest of the manifest; ValueError, as a validator raises."""
    if strategy.kind == "deployment" and target != "kubernetes":
        raise ValueError(
            f"deploy.strategy.kind deployment is for the kubernetes target only, not {target}: "
            "use bluegreen or canary"
        )
    compare = analysis.compare
    if compare is not None and target == "kubernetes":
        raise ValueError(
            "analysis.compare is not possible on the kubernetes target: the mesh discards "
            "mirrored responses, so there is no candidate answer to compare"
        )
    if compare is not None and not strategy.mirrors:
        raise ValueError(
            "analysis.compare needs a mirror step in deploy.strategy.steps: it compares the "
            "candidate's and the stable model's answers to the same mirrored requests"
        )
    if strategy.steps and strategy.seconds >= analysis.bake:
        raise ValueError(
            f"deploy.strategy.steps last {format_duration(strategy.seconds)} in all, not less "
            f"than analysis.bake {format_duration(analysis.bake)}: the steps must fit in the "
            "bake; shorten them or lengthen the bake"
        )


def moved(document: Any, source: str) -> str | None:
    """The old `deploy.kubernetes.strategy`: rewritten in place to `deploy.strategy.kind`
    when that is all it says, and the line that says what to write instead returned,
    for the commands that write a manifest's new content to refuse (`release`,
    `check`; `refuse_old_spelling`). Releases made before the move, and the reverts
    that bring them back, must still read, deploy and render (docs/ARCHITECTURE.md,
    "Deployment strategies"). A form no release could have had is refused here."""
    deploy = document.get("deploy") if isinstance(document, dict) else None
    if not isinstance(deploy, dict):
        return None
    k8s = deploy.get("kubernetes")
    if not isinstance(k8s, dict) or "strategy" not in k8s:
        return None
    old = k8s["strategy"]
    if "strategy" in deploy:
        instead = "remove it, deploy.strategy.kind says the strategy now"
    elif old in ("bluegreen", "deployment"):  # what the old schema allowed
        deploy["strategy"] = {"kind": k8s.pop("strategy")}
        return f"{source}: deploy.kubernetes.strategy moved: write deploy.strategy.kind: {old}"
    else:
        instead = f"write deploy.strategy.kind: one of {', '.join(KINDS)}"
    raise BadInput(f"{source}: deploy.kubernetes.strategy moved: {instead}")
