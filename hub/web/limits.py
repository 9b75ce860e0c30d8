"""A cap on every request body, before anything parses it.

Starlette reads a multipart form whole (spooling files to disk) when the CSRF check or a route asks for it, and
`request.body()` reads whatever comes: without a cap, one client can fill the hub's memory or disk with a single
POST. This ASGI middleware refuses a body over its path's limit with 413: by its Content-Length before reading a
byte, or, for a chunked body, as soon as the bytes received pass the limit. Each refusal is counted
(`http_body_refused` in the hub's counters).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1024 * 1024
"""Bytes of any request body (JSON, forms, a scorecard's YAML): far over what the dashboard and API send."""
COUNTER = "http_body_refused"


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over `limits[path]` (else `default`) bytes with 413, counted by `on_refuse`."""

    def __init__(
        self,
        app: ASGIApp,
        default: int = DEFAULT_LIMIT,
        limits: Mapping[str, int] | None = None,
        on_refuse: Callable[[], Any] | None = None,
    ) -> None:
        self.app, self.default, self.limits, self.on_refuse = app, default, dict(limits or {}), on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(scope, receive, send, limit)
            return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:  # cannot happen for a route that reads its body first; nothing sane left to answer
                raise
            await self._refuse(scope, receive, send, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        log.warning("%s %s: request body over %d bytes refused", scope["method"], scope["path"], limit)
        if self.on_refuse is not None:
            await run_in_threadpool(self.on_refuse)
        response = PlainTextResponse(f"request body over {limit} bytes", status_code=413)
        await response(scope, receive, send)
