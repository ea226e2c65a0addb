"""The Prometheus source's optional auth (docs/ARCHITECTURE.md,
"Analysis in the cluster"): a bearer token read from the environment variable the
manifest names, and a CA file for TLS. A small real HTTP server on 127.0.0.1 stands
in for Prometheus' query API and records what it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from releasectl.analysis.sources import PrometheusSource
from releasectl.errors import BadInput
from releasectl.manifest.analysis import AnalysisSpec


@pytest.fixture
def prometheus() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A query API answering an empty vector; yields its URL and the headers it got."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def spec(url: str, **source: Any) -> AnalysisSpec:
    return AnalysisSpec.model_validate({"source": {"kind": "prometheus", "url": url, **source}})


def test_the_bearer_token_comes_from_the_named_variable(
    prometheus: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = prometheus
    monkeypatch.setenv("PROM_TOKEN", "s3cret\n")
    with PrometheusSource(url, spec(url, bearer_token_env="PROM_TOKEN"), "1.0.0") as source:
        assert source.query("up") == []
    assert seen[-1]["Authorization"] == "Bearer s3cret"
    with PrometheusSource(url, spec(url), "1.0.0") as source:
        source.query("up")
    assert "Authorization" not in seen[-1]  # no token unless the manifest asks for one


def test_a_missing_token_or_ca_file_is_bad_input_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROM_TOKEN", raising=False)
    with pytest.raises(BadInput, match="bearer_token_env names PROM_TOKEN, which is not set"):
        PrometheusSource("http://127.0.0.1:9", spec("http://p", bearer_token_env="PROM_TOKEN"), "1")
    missing = tmp_path / "ca.pem"
    with pytest.raises(BadInput, match=f"ca_file {missing} is not a file"):
        PrometheusSource("https://127.0.0.1:9", spec("https://p", ca_file=str(missing)), "1")
    with pytest.raises(ValueError, match="bearer_token_env"):
        spec("http://p", bearer_token_env="not a name")
