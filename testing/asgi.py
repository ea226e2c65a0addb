"""One request through an ASGI app (the agent's proxy) in this process: the
messages the app sent back, as a server would have written them to the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def asgi_request(
    app: App, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> list[Message]:
    """`method path` with `body` (sent in one message, then a disconnect) and `headers`
    through `app`; the response messages: the start (its status) then the body parts."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-length", str(len(body)).encode())]
        + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent: list[Message] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
