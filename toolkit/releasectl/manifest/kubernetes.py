"""The `deploy.kubernetes` block of a release manifest and the image reference
a kubernetes-target release pins as `bundle.image` (docs/ARCHITECTURE.md,
"Kubernetes")."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

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
