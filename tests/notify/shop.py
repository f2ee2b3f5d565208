"""A shop's webhook receiver for the tests: verifies every delivery with the reference `standardwebhooks`
package, fails some on purpose, and can be taken down and brought back on the same port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.serving import free_port, serving


class Received(msgspec.Struct, kw_only=True):
    webhook_id: str
    body: bytes
    payload: dict[str, Any]
    acknowledged: bool


class Shop:
    """An ASGI app at `/hooks`: 204 for a verified delivery it accepts, 500 when `refuse` says so, 400 if forged."""

    def __init__(self, secrets: list[str], refuse: Callable[[str, int], bool] = lambda _id, _n: False) -> None:
        self.secrets = secrets
        self.refuse = refuse  # (webhook-id, how many times it came before) → answer 500
        self.received: list[Received] = []
        self.forged = 0
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def verified_by(self, secret: str, item: Received, headers: dict[str, str]) -> bool:
        try:
            Webhook(secret).verify(item.body, headers)
        except WebhookVerificationError:
            return False
        return True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = await self.handle(body, headers)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def handle(self, body: bytes, headers: dict[str, str]) -> int:
        verified = None
        for secret in self.secrets:
            try:
                verified = Webhook(secret).verify(body, headers)
                break
            except WebhookVerificationError:
                continue
        if verified is None:
            self.forged += 1
            return 400
        webhook_id = headers["webhook-id"]
        seen = sum(1 for r in self.received if r.webhook_id == webhook_id)
        ok = not self.refuse(webhook_id, seen)
        self.received.append(Received(webhook_id=webhook_id, body=body, payload=verified, acknowledged=ok))
        return 204 if ok else 500

    @contextlib.asynccontextmanager
    async def up(self) -> AsyncIterator[None]:
        async with serving(self, self.port):  # type: ignore[arg-type]
            yield

    def acknowledged(self) -> dict[str, Received]:
        return {r.webhook_id: r for r in self.received if r.acknowledged}
