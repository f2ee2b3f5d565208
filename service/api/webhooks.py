"""Webhook and IPN endpoints: `/webhooks/{provider}[/{account}]`, authenticated by the gateway's signature.

HTTP only: check the client address against the account's allowlist (403 before anything else),
read the body within the size limit (413) and the body deadline (408), find the adapter, build the
`WebhookRequest` exactly as it came over the wire, and hand it to `service.ingest`, which decides
the answer. The client address is the one behind trusted proxies (service/client_address.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from litestar import HttpMethod, Request, route
from litestar.params import FromPath
from litestar.response import Response

from providers.base import Ack, WebhookRequest, utcnow
from providers.gateway import Connected
from service import ingest, logs
from service.allowlists import Allowlists
from service.input_guard import VERBATIM
from service.ledger import GroupCommit
from service.metrics import WEBHOOKS_RECEIVED
from service.problems import NotFoundError, PayloadTooLargeError, RequestTimeoutError
from service.refusals import RefusalSampler
from service.settings import Settings

# VNPay's IPN is a GET with the signed query string; everyone else POSTs a body.
_METHODS = [HttpMethod.GET, HttpMethod.POST]


# A client that did not send its body in time is not waited for again on the same connection.
_CLOSE = {"connection": "close"}


class _OversizedError(Exception):
    """Raised by `_read_body` once the body passes the limit; carries what was read."""

    def __init__(self, prefix: bytes, size: int, announced: bool) -> None:
        self.prefix, self.size, self.announced = prefix, size, announced


@route(
    "/webhooks/{provider:str}",
    http_method=_METHODS,
    exclude_from_auth=True,
    include_in_schema=False,
    opt={VERBATIM: True},  # judged by the adapter, answered in the gateway's own terms
)
async def webhook(request: Request[Any, Any, Any], provider: FromPath[str]) -> Response[bytes]:
    """A delivery for the gateway's default account (or one the body names: MoMo partnerCode, VNPay TmnCode)."""
    return await _deliver(request, provider, None)


@route(
    "/webhooks/{provider:str}/{account:str}",
    http_method=_METHODS,
    exclude_from_auth=True,
    include_in_schema=False,
    opt={VERBATIM: True},
)
async def webhook_for_account(
    request: Request[Any, Any, Any], provider: FromPath[str], account: FromPath[str]
) -> Response[bytes]:
    """A delivery for one named gateway account of PAYRECON_GATEWAYS."""
    return await _deliver(request, provider, account)


async def _deliver(request: Request[Any, Any, Any], provider: str, account: str | None) -> Response[bytes]:
    received_at = utcnow()
    logs.bind(gateway=provider[:64], account=account)  # every line of this delivery says whose it is
    settings: Settings = request.app.state.settings
    gateways: dict[str, Connected] = request.app.state.gateways
    allowlists: Allowlists = request.app.state.allowlists
    refusals: RefusalSampler = request.app.state.refusals
    pool = request.app.state.pool
    commit: GroupCommit = request.app.state.group_commit  # webhooks' events are committed together
    gateway = gateways.get(provider)
    adapter = None if gateway is None else gateway.adapter
    if adapter is not None:
        WEBHOOKS_RECEIVED.labels(provider).inc()
        client = _client(request)
        if not allowlists.admits(provider, account, client):
            delivery = _webhook_request(request, b"", account, received_at)
            outsider = ingest.SourceNotAllowedError(
                f"client address {client} is not in allowed_sources of the [[{provider}]] account(s) this URL serves"
            )
            announced = request.headers.get("content-length", "")
            ack = await ingest.refuse(
                pool,
                provider,
                adapter,
                delivery,
                outsider,
                body_size=int(announced) if announced.isdigit() else 0,
                refusals=refusals,
            )
            return _response(Ack(403, ack.body, ack.content_type))
    limit = settings.webhook_max_body

    read: list[bytes] = []
    try:
        async with asyncio.timeout(settings.webhook_body_timeout):
            body = await _read_body(request, limit, read)
    except TimeoutError:
        delivery = _webhook_request(request, b"".join(read), account, received_at)
        slow = ingest.BodyTimeoutError(
            f"the body was not complete after {settings.webhook_body_timeout:g} s "
            f"(PAYRECON_WEBHOOK_BODY_TIMEOUT; {sum(map(len, read))} bytes came)"
        )
        if adapter is None:
            await ingest.note_refusal(pool, provider, delivery, slow, known_provider=False, refusals=refusals)
            raise RequestTimeoutError(str(slow)) from None
        ack = await ingest.refuse(pool, provider, adapter, delivery, slow, refusals=refusals)
        return _response(Ack(408, ack.body, ack.content_type), headers=_CLOSE)
    except _OversizedError as big:
        delivery = _webhook_request(request, big.prefix, account, received_at)
        how = "announces" if big.announced else "is at least"
        error = ingest.BodyTooLargeError(
            f"the body {how} {big.size} bytes; PAYRECON_WEBHOOK_MAX_BODY allows {limit} "
            f"(body_sha256 is over the {len(big.prefix)} bytes read)"
        )
        if adapter is None:
            await ingest.note_refusal(
                pool, provider, delivery, error, known_provider=False, body_size=big.size, refusals=refusals
            )
            raise PayloadTooLargeError(str(error)) from None
        ack = await ingest.refuse(pool, provider, adapter, delivery, error, body_size=big.size, refusals=refusals)
        return _response(Ack(413, ack.body, ack.content_type))

    delivery = _webhook_request(request, body, account, received_at)
    if adapter is None:
        unknown = ingest.UnknownProviderError(
            f"no gateway {provider[:64]!r} is configured here; check the webhook URL registered with the gateway"
        )
        await ingest.note_refusal(pool, provider, delivery, unknown, known_provider=False, refusals=refusals)
        raise NotFoundError(str(unknown))
    return _response(await ingest.ingest(pool, provider, adapter, delivery, refusals=refusals, commit=commit))


def _client(request: Request[Any, Any, Any]) -> str | None:
    client = request.scope.get("client")
    return client[0] if client else None


async def _read_body(request: Request[Any, Any, Any], limit: int, chunks: list[bytes]) -> bytes:
    """The body, read straight off the ASGI channel so an oversized one is never buffered whole.

    `chunks` collects what came, so a caller whose deadline passed can still hash it.
    """
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise _OversizedError(b"", int(announced), announced=True)
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect: the sender is gone, judge what came
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _OversizedError(b"".join(chunks)[: limit + 1], size, announced=False)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _webhook_request(
    request: Request[Any, Any, Any], body: bytes, account: str | None, received_at: datetime
) -> WebhookRequest:
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        # A repeated header is one comma-joined value (RFC 9110 §5.3), never silently the last one.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return WebhookRequest(
        method=request.method,
        body=body,
        headers=headers,
        query_string=request.scope.get("query_string", b"").decode("latin-1"),  # as sent: VNPay signs it
        account=account,
        received_at=received_at,
        remote_addr=_client(request),  # behind trusted proxies, the client they name
    )


def _response(ack: Ack, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(ack.body, status_code=ack.status_code, media_type=ack.content_type or "text/plain", headers=headers)


routes = [webhook, webhook_for_account]
