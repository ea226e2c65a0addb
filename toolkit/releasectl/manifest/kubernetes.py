"""The `deploy.kubernetes` block of a release manifest and the image reference
a kubernetes-target release pins as `bundle.image` (docs/ARCHITECTURE.md,
"Kubernetes")."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from releasectl.manifest.strategy import StrategySpec

# A registry host (with a dot or a port, or localhost) is optional; then path
# components as the OCI distribution spec allows them. No tag, no digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = rf"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
REPOSITORY_RE = re.compile(rf"^{REPOSITORY}$")
PINNED_IMAGE_RE = re.compile(rf"^(?P<repository>{REPOSITORY})@(?P<digest>sha256:[0-9a-f]{{64}})$")
# The base image may carry a tag or a digest (it is a setting, not a pin).
BASE_IMAGE_RE = re.compile(
    rf"^{REPOSITORY}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
)
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Kubernetes' resource.Quantity, as its API server parses it.
QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$"

Quantity = Annotated[str, StringConstraints(strict=True, pattern=QUANTITY)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Amounts(_Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(_Strict):
    requests: Amounts | None = None
    limits: Amounts | None = None


# An object's name in the cluster: a DNS subdomain (RFC 1123), as Kubernetes checks it.
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
Name = Annotated[str, StringConstraints(strict=True, max_length=253, pattern=DNS_NAME)]
# A VirtualService's HTTP route name: Istio allows any string; Argo matches it exactly.
RouteName = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9._-]{1,253}$")]


class IstioDestinationRule(_Strict):
    """Subset-level splitting: Argo sets the two subsets' pod-template-hash selectors."""

    name: Name
    canary_subset: RouteName = "canary"
    stable_subset: RouteName = "stable"


class IstioTraffic(_Strict):
    """Istio: the team's VirtualService (and DestinationRule), which Argo edits in place
    (docs/ARCHITECTURE.md, "Kubernetes")."""

    virtual_service: Name = Field(description="The VirtualService Argo sets the weights in")
    routes: list[RouteName] | None = Field(
        default=None,
        description="Its HTTP route names to split (required by Argo when it has several)",
    )
    destination_rule: IstioDestinationRule | None = Field(
        default=None,
        description="Split by DestinationRule subsets instead of by the canary/stable Services",
    )


class GatewayApiTraffic(_Strict):
    """The Gateway API plugin (`argoproj-labs/gatewayAPI`): the team's HTTPRoute."""

    http_route: Name = Field(description="The HTTPRoute whose backend weights Argo sets")
    namespace: Annotated[str, StringConstraints(strict=True, pattern=DNS_LABEL)] | None = Field(
        default=None, description="The HTTPRoute's namespace (default: the model's)"
    )


class TrafficSpec(_Strict):
    """`deploy.kubernetes.traffic`: the router that splits a canary's traffic. Exactly one."""

    istio: IstioTraffic | None = None
    gateway_api: GatewayApiTraffic | None = None

    @model_validator(mode="after")
    def _one(self) -> TrafficSpec:
        if (self.istio is None) == (self.gateway_api is None):
            raise ValueError("traffic names exactly one router: istio or gateway_api")
        return self


class KubernetesDeploy(_Strict):
    """Where and how a kubernetes-target model runs; rendered into Git by
    `releasectl render` and by every release commit."""

    image: str = Field(
        description="The image repository the release's image is pushed to "
        "(e.g. ghcr.io/org/iris): no tag or digest, the release pins the digest"
    )
    namespace: Annotated[str, StringConstraints(strict=True, pattern=DNS_LABEL)]
    environment: Annotated[str, StringConstraints(strict=True, pattern=DNS_LABEL)] = "production"
    replicas: int = Field(default=1, ge=0, le=1000, strict=True)
    resources: Resources | None = None
    path: str | None = Field(
        default=None,
        description="Where the rendered state is written, relative to the repository "
        "(default deploy/<environment>/<model>)",
    )
    create_namespace: bool = Field(
        default=True,
        description="Render the Namespace object (false: the namespace is made elsewhere, "
        "or by another model of the environment)",
    )
    base_image: str | None = Field(
        default=None,
        description="The image the release's image is built FROM, in a registry the "
        "builders can reach (a tag or a digest)",
    )
    traffic: TrafficSpec | None = Field(
        default=None,
        description="The traffic router a canary's weights and mirror are set in "
        "(istio or gateway_api); required by deploy.strategy.kind canary",
    )

    @field_validator("image")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not isinstance(value, str) or not REPOSITORY_RE.fullmatch(value):
            raise ValueError(
                "must be an image repository without tag or digest, e.g. ghcr.io/org/iris "
                "(the release pins the digest in bundle.image)"
            )
        return value

    @field_validator("base_image")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is not None and (not isinstance(value, str) or not BASE_IMAGE_RE.fullmatch(value)):
            raise ValueError("must be an image reference, e.g. registry.example/python:3.11-slim")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.strip("/").split("/") if isinstance(value, str) else []
        if (
            not isinstance(value, str)
            or value.startswith("/")
            or not parts
            or any(p in ("", ".", "..") or not re.fullmatch(r"[A-Za-z0-9._-]+", p) for p in parts)
            or parts[0] in ("model-releases", ".git", ".github", ".releasectl")
        ):
            raise ValueError(
                "must be a relative folder of plain names outside model-releases/, "
                "e.g. deploy/production/iris"
            )
        return "/".join(parts)

    def folder(self, model: str) -> str:
        return self.path or f"deploy/{self.environment}/{model}"


PinnedImage = Annotated[
    str,
    StringConstraints(strict=True, pattern=PINNED_IMAGE_RE.pattern),
    Field(description="Written by releasectl: <repository>@sha256:<hex>, the release's image"),
]


def split_pinned(image: str) -> tuple[str, str]:
    """(repository, sha256:<hex>) of a pinned image reference."""
    match = PINNED_IMAGE_RE.fullmatch(image)
    assert match is not None, image  # the manifest's validation made sure
    return match["repository"], match["digest"]


def check_traffic(k8s: KubernetesDeploy, strategy: StrategySpec) -> None:
    """The rules between `deploy.kubernetes.traffic` and `deploy.strategy`; ValueError,
    as a validator raises (docs/ARCHITECTURE.md, "Kubernetes")."""
    if strategy.kind != "canary":
        if k8s.traffic is not None:
            raise ValueError(
                f"deploy.kubernetes.traffic is only for deploy.strategy.kind canary "
                f"(kind is {strategy.kind}): remove it"
            )
        return
    if k8s.traffic is None:
        raise ValueError(
            "deploy.strategy.kind canary on kubernetes needs deploy.kubernetes.traffic "
            "(istio or gateway_api): without a router Argo Rollouts splits by replica count "
            "and the candidate would be judged by its own pods' figures"
        )
    if k8s.traffic.gateway_api is not None and strategy.mirrors:
        raise ValueError(
            "a mirror step needs traffic.istio: the Gateway API plugin does not implement "
            "setMirrorRoute; use istio or weight steps only"
        )
    if strategy.client_key is not None:
        raise ValueError(
            "deploy.strategy.client_key is not possible on kubernetes: Argo Rollouts' "
            "weighted routes split per request, not per client; remove it"
        )
