"""The release a target serves is one `ReleaseRef`, nested in the serving
models, while the JSON they read and write keeps its flat shape: `status
--json` and `deploy --json` print the same documents as before, and a
`state.json` written by an earlier releasectl still loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from releasectl.serving.local.models import DeployRequest, DeployResult
from releasectl.serving.local.state import Slot, TargetState
from releasectl.serving.release_ref import ReleaseRef

COMMIT = "c" * 40
DIGEST = "sha256:" + "0" * 64

# A state file as releasectl wrote it before the release was nested: flat slots.
EARLIER_STATE = {
    "models": {
        "iris": {
            "model": "iris",
            "port": 3000,
            "high_water": {
                "serial": 3,
                "commit": COMMIT,
                "version": "1.1.0",
                "at": "2026-01-01T00:00:05Z",
            },
            "live": {
                "id": "1.1.0-abc123",
                "model": "iris",
                "version": "1.1.0",
                "digest": DIGEST,
                "commit": COMMIT,
                "serial": 3,
                "fast_track": True,
                "bento_dir": "/srv/bundles/iris",
                "port": 41234,
                "python": "/srv/envs/x/bin/python",
                "pid": 4242,
                "create_time": 1767225600.5,
                "started": "2026-01-01T00:00:00Z",
                "since": "2026-01-01T00:00:05Z",
            },
            "standby": None,
            "standby_until": None,
            "pending": None,
            "last_deploy": {
                "ok": True,
                "version": "1.1.0",
                "digest": DIGEST,
                "serial": 3,
                "fast_track": True,
                "at": "2026-01-01T00:00:05Z",
                "message": "1.1.0 is live",
            },
            "message": None,
        }
    }
}


def test_an_earlier_state_file_loads_and_is_written_back_unchanged() -> None:
    state = TargetState.model_validate_json(json.dumps(EARLIER_STATE))
    live = state.models["iris"].live
    assert live is not None
    assert live.release == ReleaseRef(
        version="1.1.0", digest=DIGEST, commit=COMMIT, serial=3, fast_track=True
    )
    assert json.loads(state.model_dump_json()) == EARLIER_STATE


def test_status_shows_a_slot_with_the_release_fields_at_the_top() -> None:
    slot = Slot.model_validate(EARLIER_STATE["models"]["iris"]["live"])
    shown = slot.info().model_dump(mode="json")
    assert list(shown) == [
        "slot", "version", "digest", "commit", "serial", "fast_track", "pid", "port", "since"
    ]  # fmt: skip
    assert (shown["version"], shown["serial"], shown["fast_track"]) == ("1.1.0", 3, True)


def test_deploy_json_keeps_its_fields_and_their_order() -> None:
    result = DeployResult(
        model="iris",
        release=ReleaseRef(version="2.0.0", digest=DIGEST, commit=COMMIT, serial=4),
        endpoint="http://127.0.0.1:3000",
        slot="2.0.0-abc",
        switch="cold",
        previous_version="1.1.0",
        standby_until=None,
        seconds=1.5,
    )
    printed = json.loads(result.model_dump_json())
    assert list(printed) == [
        "model", "version", "digest", "commit", "serial", "fast_track", "endpoint", "slot",
        "switch", "previous_version", "standby_until", "seconds",
    ]  # fmt: skip
    assert DeployResult.model_validate(printed) == result


def test_a_deploy_request_refuses_what_it_always_refused() -> None:
    wire = {
        "model": "iris",
        "version": "1.0.0",
        "digest": DIGEST,
        "commit": COMMIT,
        "serial": 1,
        "bento_dir": "/srv/bundles/iris",
        "port": 3000,
    }
    assert DeployRequest.model_validate(wire).release.fast_track is False
    with pytest.raises(ValidationError, match="extra"):
        DeployRequest.model_validate({**wire, "unknown": 1})
    with pytest.raises(ValidationError, match="version"):
        DeployRequest.model_validate({**wire, "version": "1.0.0/../x"})
    with pytest.raises(ValidationError, match="serial"):
        DeployRequest.model_validate({**wire, "serial": -1})


def test_a_copy_with_a_new_version_serves_that_version() -> None:
    """`model_copy(update={"version": ...})` changes the nested release: a
    caller that copies a request for another bento gets that bento's release."""
    request = DeployRequest(
        model="echo",
        release=ReleaseRef(version="4.0.0", digest="sha256:crash", commit=COMMIT, serial=4),
        bento_dir=Path("/srv/bundles/crash"),
        port=3000,
    )
    copy = request.model_copy(update={"version": "5.0.0", "digest": "sha256:badpin"})
    assert (copy.version, copy.digest, copy.serial) == ("5.0.0", "sha256:badpin", 4)
    assert json.loads(copy.model_dump_json())["version"] == "5.0.0"
    assert request.version == "4.0.0"  # the original is untouched
