"""The store's faults are the user's environment, not bugs: missing credentials,
an endpoint that does not answer, permission denied and a missing bucket are
exit 1 with one line naming the store and what to set (docs/ARCHITECTURE.md,
"The artifact store"). A real S3-compatible server (moto) on 127.0.0.1 and the
real client (s3fs); `store migrate` asks the team's store before anything else."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from releasectl.loopback import free_port
from testing.repos import RELEASECTL, new_repo
from testing.s3 import CREDENTIALS, moto_server

pytestmark = pytest.mark.slow

NO_AWS_CONFIG = {
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_MAX_ATTEMPTS": "1",  # botocore's retries of a refused connection: one try
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An open server with the team's bucket, and one that checks credentials."""
    logs = tmp_path_factory.mktemp("moto")
    with (
        moto_server(logs) as open_url,
        moto_server(logs, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as strict_url,
    ):
        import fsspec

        fs = fsspec.filesystem(
            "s3", endpoint_url=open_url, key="x", secret="x", skip_instance_cache=True
        )
        fs.mkdir("team-bucket")
        yield {"open": open_url, "strict": strict_url}


def _migrate(tmp_path: Path, url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    repo = new_repo(tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    return subprocess.run(
        [RELEASECTL, "store", "migrate", "--to", url, "--dry-run"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**clean, **NO_AWS_CONFIG, "RELEASECTL_HOME": str(tmp_path / "home"), **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("case", "url", "says"),
    [
        ("no credentials", "s3://team-bucket/r", "set AWS_ACCESS_KEY_ID and AWS_SECRET"),
        ("closed endpoint", "s3://team-bucket/r", "set FSSPEC_S3_ENDPOINT_URL"),
        ("unknown key", "s3://team-bucket/r", "permission denied"),
        ("no bucket", "s3://no-such-bucket/r", "not found"),
    ],
)
def test_a_store_fault_is_exit_1_with_one_line_naming_the_store_and_the_fix(
    servers: dict[str, str], tmp_path: Path, case: str, url: str, says: str
) -> None:
    env = {
        "no credentials": {"FSSPEC_S3_ENDPOINT_URL": servers["open"]},
        "closed endpoint": {
            **CREDENTIALS,
            "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        },
        "unknown key": {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": servers["strict"]},
        "no bucket": {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": servers["open"]},
    }[case]
    done = _migrate(tmp_path, url, env)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"artifact store {url}" in line and says in line
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("case", ["no credentials", "closed endpoint", "unknown key"])
def test_the_store_that_build_and_deploy_read_maps_the_same_faults(
    servers: dict[str, str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """What `build` and `deploy` ask first (is the pinned archive stored?) was a raw
    botocore exception, i.e. exit 70, "internal error"."""
    import fsspec

    from releasectl.bundles.store import ArtifactStore, StoreError

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in NO_AWS_CONFIG.items():
        monkeypatch.setenv(key, value)
    if case != "no credentials":
        for key, value in CREDENTIALS.items():
            monkeypatch.setenv(key, value)
    endpoint = {
        "closed endpoint": f"http://127.0.0.1:{free_port()}",
        "unknown key": servers["strict"],
    }.get(case, servers["open"])
    # fsspec reads FSSPEC_S3_ENDPOINT_URL when imported: its configuration, set here.
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    url = "s3://team-bucket/r"
    store = ArtifactStore(url)
    key = ArtifactStore.bundle_key("sha256:" + "a" * 64)
    try:
        with pytest.raises(StoreError) as raised:
            store.get(key, Path("/nonexistent-dir/archive.bento"))
    finally:
        store.fs.clear_instance_cache()
    assert raised.value.code == 1 and f"artifact store {url}" in raised.value.line()
