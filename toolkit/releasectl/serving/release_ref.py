"""`ReleaseRef`: which release a target serves, defined once
(docs/ARCHITECTURE.md, "Deploy targets"). A deploy request carries one, a slot
keeps it, `status` and `deploy` report it.

The JSON these models read and write keeps the release's fields at the top
level (`status --json` and `deploy --json` are public, and the local target's
`state.json` must load across versions), so `CarriesRelease` nests the
reference in Python and flattens it on the way in and out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)


class ReleaseRef(BaseModel):
    """A release as a target serves it: the version and the content it pins,
    the state (commit, serial) that declared it, and whether it skips the bake
    (a verified revert's `fast_track`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1, pattern=r"^[0-9A-Za-z.+-]+$")
    digest: str = Field(min_length=1)
    commit: str = Field(min_length=1)
    serial: int = Field(ge=0)
    fast_track: bool = False


_FIELDS = tuple(ReleaseRef.model_fields)


class CarriesRelease(BaseModel):
    """A model with a `release: ReleaseRef`, read and written flat. Each
    subclass declares the field itself, where its fields used to be, so the
    JSON keeps its order."""

    if TYPE_CHECKING:
        release: ReleaseRef

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        if isinstance(data, dict) and "release" not in data:
            rest = {k: v for k, v in data.items() if k not in _FIELDS}
            rest["release"] = {k: v for k, v in data.items() if k in _FIELDS}
            return rest
        return data

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in handler(self).items():
            if key == "release" and isinstance(value, dict):
                out.update(value)  # in the release's place: the printed order stays
            else:
                out[key] = value
        return out

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; a release field in `update` changes the nested release, as
        the constructor takes them flat too."""
        if update and any(key in _FIELDS for key in update):
            rest = {k: v for k, v in update.items() if k not in _FIELDS}
            changed = {k: v for k, v in update.items() if k in _FIELDS}
            rest["release"] = rest.get("release", self.release).model_copy(update=changed)
            update = rest
        return super().model_copy(update=update, deep=deep)

    # Read-only views, so readers keep `slot.version`; write `release` as a whole.
    @property
    def version(self) -> str:
        return self.release.version

    @property
    def digest(self) -> str:
        return self.release.digest

    @property
    def commit(self) -> str:
        return self.release.commit

    @property
    def serial(self) -> int:
        return self.release.serial

    @property
    def fast_track(self) -> bool:
        return self.release.fast_track
