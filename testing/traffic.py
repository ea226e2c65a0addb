"""Clients that keep sending requests to an endpoint while a test changes what serves
it, and record every answer: Load (POST /predict on the iris example) and Traffic
(POST /version on the fixture bentos)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from testing.bentos import SETOSA
from testing.processes import wait_until


@dataclass
class Load:
    """Sends POST /predict at `rate` per second until stopped; records every
    outcome with the version that answered."""

    url: str
    rate: float = 30.0
    clients: int = 6  # several, so that a slow answer does not slow the whole load
    feedback: bool = False  # also report the true label of every prediction
    results: list[tuple[float, int, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    r = client.post(f"{self.url}/predict", json={"features": SETOSA})
                    body = r.json() if r.status_code == 200 else {}
                    outcome = (time.monotonic(), r.status_code, body.get("version"))
                    if self.feedback and "id" in body:
                        client.post(
                            f"{self.url}/feedback", json={"items": [{"id": body["id"], "label": 0}]}
                        )
                except httpx.HTTPError as exc:
                    outcome = (time.monotonic(), 0, type(exc).__name__)
                with self._lock:
                    self.results.append(outcome)
                next_at += self.clients / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def mark(self) -> int:
        return len(self.results)

    def failures(self, since: int = 0) -> list[tuple[float, int, str | None]]:
        return [r for r in self.results[since:] if r[1] != 200]

    def versions(self, since: int = 0) -> list[str | None]:
        return [r[2] for r in self.results[since:] if r[1] == 200]

    def wait_for(self, count: int, deadline: float = 30.0) -> None:
        """Until `count` more responses have come back (a readiness check)."""
        goal = len(self.results) + count
        end = time.monotonic() + deadline
        while len(self.results) < goal:
            assert time.monotonic() < end, "the load generator stalled"
            time.sleep(0.02)

    def rate_seen(self, since: int) -> float:
        times = sorted(r[0] for r in self.results[since:])
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def ask_version(url: str, client: httpx.Client | None = None) -> str:
    http = client or httpx.Client(trust_env=False)
    r = http.post(f"{url}/version", json={}, timeout=10)
    r.raise_for_status()
    return str(r.json()["version"])


@dataclass
class Traffic:
    """A thread that calls the endpoint every `interval` seconds and records every answer."""

    url: str
    interval: float = 0.02
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=10) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    self.answers.append((sent, ask_version(self.url, http)))
                except Exception as exc:
                    self.failures.append(repr(exc))
                self._stop.wait(self.interval)

    def versions_sent_after(self, t: float) -> set[str]:
        return {v for sent, v in self.answers if sent > t}

    def rate(self, start: float, end: float) -> float:
        return sum(1 for sent, _ in self.answers if start <= sent <= end) / (end - start)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Wait until `count` more answers have arrived (traffic really flows)."""
        target = len(self.answers) + count
        wait_until(lambda: len(self.answers) >= target, timeout, f"{count} answers")
