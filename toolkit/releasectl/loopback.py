"""The loopback address the local target listens on (its agent's control API,
each model's stable endpoint, each slot's `bentoml serve`): one home for the
host, the URL built from a port, and a free port (docs/ARCHITECTURE.md,
"Deploy targets").
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def url(port: int) -> str:
    """The base URL of a server listening on the loopback at `port`."""
    return f"http://{HOST}:{port}"


def free_port() -> int:
    """A port nothing listens on right now, chosen by the kernel."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
