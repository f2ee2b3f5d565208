"""The shop's webhook endpoints and their signing secrets: the SQL of `webhook_endpoints` / `webhook_secrets`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import asyncpg
import msgspec

from providers.base import PaymentStatus
from service.db import Conn
from service.notify import signing

# Every type the outbox writes (its check constraint lists the same): one per status an order can
# move to, and a new anomaly. Shops filter on these.
EVENT_TYPES: tuple[str, ...] = (
    *(f"order.{s}" for s in PaymentStatus if s is not PaymentStatus.PENDING),
    "anomaly.opened",
)
EventType = Annotated[str, msgspec.Meta(description="One of: " + ", ".join(EVENT_TYPES))]
MAX_OVERLAP = timedelta(days=7)

_COLUMNS = """e.id, e.url, e.description, e.event_types, e.enabled, e.consecutive_failures, e.circuit_open_until,
              e.created_at, e.updated_at,
              (select count(*) from webhook_secrets s where s.endpoint_id = e.id
                 and (s.expires_at is null or s.expires_at > now())) as live_secrets"""


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook endpoint as the API shows it (never its secrets, which are shown once)."""

    id: int
    url: str
    description: str
    event_types: list[str]  # empty: every type
    enabled: bool
    consecutive_failures: int  # failed attempts in a row; the circuit opens at CIRCUIT_THRESHOLD
    circuit_open_until: datetime | None  # nothing is sent before this time
    live_secrets: int  # 2 during a rotation's overlap
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: Endpoint
    secret: str  # `whsec_…`: shown only in this answer; verify deliveries with it


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return msgspec.convert(dict(row), Endpoint)


async def create(
    conn: Conn, *, url: str, event_types: list[str], description: str = "", enabled: bool = True
) -> EndpointWithSecret:
    secret = signing.new_secret()
    async with conn.transaction():
        endpoint_id = await conn.fetchval(
            """insert into webhook_endpoints (url, event_types, description, enabled)
               values ($1, $2, $3, $4) returning id""",
            url,
            sorted(set(event_types)),
            description,
            enabled,
        )
        await conn.execute("insert into webhook_secrets (endpoint_id, secret) values ($1, $2)", endpoint_id, secret)
        endpoint = await get(conn, endpoint_id)
    assert endpoint is not None
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


async def get(conn: Conn, endpoint_id: int) -> Endpoint | None:
    row = await conn.fetchrow(
        f"select {_COLUMNS} from webhook_endpoints e where e.id = $1 and e.deleted_at is null", endpoint_id
    )
    return None if row is None else _endpoint(row)


async def list_endpoints(conn: Conn) -> list[Endpoint]:
    rows = await conn.fetch(f"select {_COLUMNS} from webhook_endpoints e where e.deleted_at is null order by e.id")
    return [_endpoint(r) for r in rows]


async def update(
    conn: Conn,
    endpoint_id: int,
    *,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> Endpoint | None:
    """Change what is given; re-enabling also closes the circuit (the shop says it is back)."""
    found = await conn.fetchval(
        """update webhook_endpoints set
               url = coalesce($2, url),
               event_types = coalesce($3, event_types),
               description = coalesce($4, description),
               enabled = coalesce($5, enabled),
               consecutive_failures = case when $5 then 0 else consecutive_failures end,
               circuit_open_until = case when $5 then null else circuit_open_until end,
               updated_at = now()
           where id = $1 and deleted_at is null returning id""",
        endpoint_id,
        url,
        None if event_types is None else sorted(set(event_types)),
        description,
        enabled,
    )
    return None if found is None else await get(conn, endpoint_id)


async def delete(conn: Conn, endpoint_id: int) -> bool:
    """Stop and hide the endpoint for good; its delivery history stays in the database."""
    found = await conn.fetchval(
        """update webhook_endpoints set deleted_at = now(), enabled = false, updated_at = now()
           where id = $1 and deleted_at is null returning id""",
        endpoint_id,
    )
    return found is not None


async def rotate_secret(conn: Conn, endpoint_id: int, overlap: timedelta) -> EndpointWithSecret | None:
    """A new current secret; the live old ones expire after `overlap` (0: at once). Both sign meanwhile."""
    secret = signing.new_secret()
    async with conn.transaction():
        locked = await conn.fetchval(
            "select 1 from webhook_endpoints where id = $1 and deleted_at is null for update", endpoint_id
        )
        if locked is None:
            return None
        await conn.execute(
            """update webhook_secrets set expires_at = now() + $2
               where endpoint_id = $1 and (expires_at is null or expires_at > now() + $2)""",
            endpoint_id,
            overlap,
        )
        await conn.execute("insert into webhook_secrets (endpoint_id, secret) values ($1, $2)", endpoint_id, secret)
        endpoint = await get(conn, endpoint_id)
    assert endpoint is not None
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


async def live_secrets(conn: Conn, endpoint_id: int) -> list[str]:
    """The secrets to sign with now: the current one first, then those still in their overlap."""
    rows = await conn.fetch(
        """select secret from webhook_secrets
           where endpoint_id = $1 and (expires_at is null or expires_at > now())
           order by expires_at desc nulls first, id desc""",
        endpoint_id,
    )
    return [r["secret"] for r in rows]
