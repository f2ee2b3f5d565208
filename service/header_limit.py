"""PAYRECON_MAX_HEADER_BYTES: a request whose line and headers exceed it is answered 431, before any work.

uvicorn does not bound headers reliably (httptools has no limit; h11's applies only to what is still
incomplete after a read), so the bound is checked here, on what the server parsed: such a request
never reaches routing, authentication, logging or a database. What uvicorn itself buffers to parse
them is bounded only by a reverse proxy in front (nginx `large_client_header_buffers`; README).
"""

from __future__ import annotations

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from service.metrics import REQUESTS_REFUSED_EARLY
from service.problems import MEDIA_TYPE, problem


class HeaderLimitMiddleware:
    """Pure ASGI middleware answering 431 to requests with more than `limit` bytes of line and headers."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
            if size > self.limit:
                REQUESTS_REFUSED_EARLY.labels("header_too_large").inc()
                detail = f"the request line and headers are {size} bytes; PAYRECON_MAX_HEADER_BYTES allows {self.limit}"
                start: HTTPResponseStartEvent = {
                    "type": "http.response.start",
                    "status": 431,
                    "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"connection", b"close")],
                }
                body: HTTPResponseBodyEvent = {
                    "type": "http.response.body",
                    "body": msgspec.json.encode(problem(431, detail)),
                    "more_body": False,
                }
                await send(start)
                await send(body)
                return
        await self.app(scope, receive, send)
