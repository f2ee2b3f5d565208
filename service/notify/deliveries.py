"""Delivering notifications to the shop's endpoints: fan-out, claims, attempts, retries, the circuit, the log.

At least once, never lost: a delivery row exists for every (notification, matching endpoint)
before anything is sent, and it stays `pending` until an attempt gets a 2xx. A claim stamps
`next_attempt_at` as a lease (no lock is held across the HTTP call), so a worker that dies
mid-attempt leaves the delivery to be tried again when the lease ends. The shop dedupes on
`webhook-id`, the same on every attempt.

Order: deliveries are attempted oldest first, but a retry can overtake nothing and be overtaken
by everything, so the shop must not rely on arrival order: each payload carries the order's
`version`, and news with a lower version than the one the shop holds is old news.

Retries follow `RETRY_SCHEDULE` (about three days, like the gateways' own webhooks); a delivery
whose last scheduled retry fails is `failed` (redeliver it by hand). After `CIRCUIT_THRESHOLD`
failed attempts in a row an endpoint's circuit opens: nothing is sent to it for a cool-down
that doubles up to an hour, then one delivery probes it; a 2xx closes the circuit.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import msgspec

from service import metrics
from service.db import Conn
from service.notify import endpoints, signing

# Seconds to wait after the 1st, 2nd… failed attempt: 71.5 hours in all, then the delivery fails.
RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000, 43200, 43200, 72000)
CIRCUIT_THRESHOLD = 5  # failed attempts in a row before an endpoint's circuit opens
CIRCUIT_COOLDOWN = 60.0  # seconds, doubled on each further failure, at most CIRCUIT_MAX
CIRCUIT_MAX = 3600.0
LEASE = 120.0  # seconds a claimed delivery is left to its worker before another may try it
ATTEMPT_TIMEOUT = 15.0  # seconds per HTTP attempt, connection included
MAX_LOGGED_BODY = 1024
_ORDER_COLUMNS_HIDDEN = ("request_hash", "status_at")  # internal columns of `orders`, not for the shop


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """The JSON body of a notification (the Standard Webhooks recommended shape)."""

    type: str  # `order.succeeded`, `anomaly.opened`…
    timestamp: datetime  # when the change was committed
    data: dict[str, Any]  # {"order": …, "version": n} and, for anomaly.opened, "anomaly"


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    attempted_at: datetime
    status_code: int | None  # null: no HTTP answer (refused, timed out)
    error: str | None
    latency_ms: int
    response_body: str | None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One notification to one endpoint, with every attempt made."""

    id: int
    endpoint_id: int
    notification_id: int
    webhook_id: str  # the `webhook-id` header: the same on every attempt
    type: str
    order_id: str
    version: int  # the order's version this news is about
    status: str  # pending | delivered | failed
    tries: int  # attempts in the current round
    next_attempt_at: datetime | None  # null once delivered or failed
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[Attempt]


def retry_delay(tries: int, scale: float = 1.0) -> float | None:
    """Seconds before the next attempt after `tries` failed ones; None when the schedule is spent."""
    if tries > len(RETRY_SCHEDULE):
        return None
    return RETRY_SCHEDULE[tries - 1] * scale


def circuit_cooldown(consecutive_failures: int, scale: float = 1.0) -> float | None:
    """How long the circuit stays open after this many failures in a row (None: closed)."""
    if consecutive_failures < CIRCUIT_THRESHOLD:
        return None
    doubled: float = CIRCUIT_COOLDOWN * 2.0 ** (consecutive_failures - CIRCUIT_THRESHOLD)
    return min(doubled, CIRCUIT_MAX) * scale


# A notification with what its payload needs (`render`).
NOTIFICATIONS = """
select n.id, n.type, n.order_id, n.order_version, n.data, n.created_at,
       (select to_jsonb(a) from anomalies a where a.id = n.anomaly_id) as anomaly
from notifications n"""


async def fan_out(conn: Conn, batch: int = 500) -> int:
    """Turn waiting notifications into deliveries for every matching endpoint; the number of notifications done.

    SKIP LOCKED lets several workers fan out at once without waiting on each other; the stamp and the
    deliveries commit together, so a crash between them redoes both.
    """
    async with conn.transaction():
        rows = await conn.fetch(
            NOTIFICATIONS + " where n.fanned_out_at is null order by n.id limit $1 for update of n skip locked", batch
        )
        if not rows:
            return 0
        await conn.executemany(
            """insert into webhook_deliveries (notification_id, endpoint_id, payload)
               select $1, e.id, $3 from webhook_endpoints e
               where e.enabled and e.created_at <= $4
                 and (cardinality(e.event_types) = 0 or $2 = any(e.event_types))
               on conflict (notification_id, endpoint_id) do nothing""",
            [(r["id"], r["type"], render(r), r["created_at"]) for r in rows],
        )
        await conn.execute("update notifications set fanned_out_at = now() where id = any($1)", [r["id"] for r in rows])
    return len(rows)


def render(row: asyncpg.Record) -> bytes:
    order = {k: v for k, v in row["data"].items() if k not in _ORDER_COLUMNS_HIDDEN}
    data: dict[str, Any] = {"order": order, "version": row["order_version"]}
    if row["anomaly"] is not None:
        data["anomaly"] = row["anomaly"]
    return msgspec.json.encode(Payload(type=row["type"], timestamp=row["created_at"], data=data))


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    endpoint_id: int
    notification_id: int
    url: str
    payload: bytes
    tries: int


async def claim(conn: Conn, limit: int = 50, per_endpoint: int = 10) -> list[Claimed]:
    """Due deliveries of enabled endpoints whose circuit is closed (or due a probe: one delivery), leased.

    The candidates are read without locks; the UPDATE re-checks each row after taking its lock, so
    of two workers claiming the same delivery only the first gets it.
    """
    rows = await conn.fetch(
        """with due as (
               select d.id, d.next_attempt_at, e.consecutive_failures,
                      row_number() over (partition by d.endpoint_id order by d.next_attempt_at, d.id) as rank
               from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id
               where d.status = 'pending' and d.next_attempt_at <= now() and e.enabled
                 and (e.circuit_open_until is null or e.circuit_open_until <= now())),
           picked as (
               select id from due where rank <= case when consecutive_failures >= $4 then 1 else $1 end
               order by next_attempt_at, id limit $2)
           update webhook_deliveries d set next_attempt_at = now() + make_interval(secs => $3)
           from picked, webhook_endpoints e
           where d.id = picked.id and e.id = d.endpoint_id and d.status = 'pending' and d.next_attempt_at <= now()
           returning d.id, d.endpoint_id, d.notification_id, e.url, d.payload, d.tries""",
        per_endpoint,
        limit,
        LEASE,
        CIRCUIT_THRESHOLD,
    )
    return [msgspec.convert(dict(r), Claimed) for r in rows]


class Result(msgspec.Struct, frozen=True, kw_only=True):
    status_code: int | None
    error: str | None
    latency_ms: int
    response_body: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def send(http: httpx.AsyncClient, claimed: Claimed, secrets: list[str], now: float | None = None) -> Result:
    """One signed HTTP attempt. Redirects are not followed: a 3xx is a failure, as the spec says."""
    timestamp = int(now if now is not None else time.time())
    headers = signing.headers(secrets, signing.message_id(claimed.notification_id), timestamp, claimed.payload)
    started = time.perf_counter()
    try:
        response = await http.post(
            claimed.url, content=claimed.payload, headers=headers, timeout=ATTEMPT_TIMEOUT, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        latency = int((time.perf_counter() - started) * 1000)
        return Result(
            status_code=None, error=f"{type(exc).__name__}: {exc}"[:500], latency_ms=latency, response_body=None
        )
    latency = int((time.perf_counter() - started) * 1000)
    body = response.content[:MAX_LOGGED_BODY].decode("utf-8", "replace")
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return Result(status_code=response.status_code, error=error, latency_ms=latency, response_body=body)


async def record(conn: Conn, claimed: Claimed, result: Result, scale: float = 1.0) -> str:
    """Log the attempt and move the delivery and its endpoint's circuit on; the delivery's new status."""
    status = await _record(conn, claimed, result, scale)
    # counted once committed: delivered, retrying (another attempt is scheduled) or gave_up
    metrics.NOTIFICATION_DELIVERIES.labels({"pending": "retrying", "failed": "gave_up"}.get(status, status)).inc()
    return status


async def _record(conn: Conn, claimed: Claimed, result: Result, scale: float) -> str:
    async with conn.transaction():
        await conn.execute(
            """insert into webhook_attempts (delivery_id, status_code, error, latency_ms, response_body)
               values ($1, $2, $3, $4, $5)""",
            claimed.id,
            result.status_code,
            result.error,
            result.latency_ms,
            result.response_body,
        )
        tries = claimed.tries + 1
        if result.ok:
            await conn.execute(
                """update webhook_deliveries set status = 'delivered', tries = $2, last_attempt_at = now(),
                          delivered_at = now() where id = $1""",
                claimed.id,
                tries,
            )
            await conn.execute(
                """update webhook_endpoints set consecutive_failures = 0, circuit_open_until = null
                   where id = $1 and consecutive_failures > 0""",
                claimed.endpoint_id,
            )
            return "delivered"
        delay = retry_delay(tries, scale)
        status = "failed" if delay is None else "pending"
        await conn.execute(
            """update webhook_deliveries set status = $2, tries = $3, last_attempt_at = now(),
                      next_attempt_at = now() + make_interval(secs => $4) where id = $1""",
            claimed.id,
            status,
            tries,
            delay or 0.0,
        )
        failures = await conn.fetchval(
            """update webhook_endpoints set consecutive_failures = consecutive_failures + 1
               where id = $1 returning consecutive_failures""",
            claimed.endpoint_id,
        )
        cooldown = circuit_cooldown(failures, scale)
        if cooldown is not None:
            await conn.execute(
                "update webhook_endpoints set circuit_open_until = now() + make_interval(secs => $2) where id = $1",
                claimed.endpoint_id,
                cooldown,
            )
        return status


async def deliver_due(pool: asyncpg.Pool, http: httpx.AsyncClient, *, scale: float = 1.0, limit: int = 50) -> int:
    """Fan out what waits, then attempt every due delivery once; the number of attempts made."""
    async with pool.acquire() as conn:
        while await fan_out(conn):
            pass
        claimed = await claim(conn, limit=limit)
        secrets = {c.endpoint_id: await endpoints.live_secrets(conn, c.endpoint_id) for c in claimed}

    async def attempt(c: Claimed) -> None:
        result = await send(http, c, secrets[c.endpoint_id])
        async with pool.acquire() as conn:
            await record(conn, c, result, scale)

    await asyncio.gather(*(attempt(c) for c in claimed))
    return len(claimed)


_DELIVERY = """
select d.id, d.endpoint_id, d.notification_id, n.type, n.order_id, n.order_version as version, d.status, d.tries,
       case when d.status = 'pending' then d.next_attempt_at end as next_attempt_at, d.delivered_at, d.created_at,
       coalesce((select array_agg(row(a.attempted_at, a.status_code, a.error, a.latency_ms, a.response_body)
                                  order by a.id)
                 from webhook_attempts a where a.delivery_id = d.id), '{}') as attempts
from webhook_deliveries d join notifications n on n.id = d.notification_id
"""


def _delivery(row: asyncpg.Record) -> Delivery:
    attempts = [
        Attempt(attempted_at=a[0], status_code=a[1], error=a[2], latency_ms=a[3], response_body=a[4])
        for a in row["attempts"]
    ]
    fields = {k: row[k] for k in row.keys() if k != "attempts"}  # noqa: SIM118 (Record is not a dict)
    fields["webhook_id"] = signing.message_id(row["notification_id"])
    return msgspec.convert({**fields, "attempts": attempts}, Delivery, from_attributes=True)


async def list_deliveries(
    conn: Conn, endpoint_id: int, *, status: str | None = None, before_id: int | None = None, limit: int = 50
) -> list[Delivery]:
    """An endpoint's deliveries, newest first (`limit + 1` asked by the caller to know if more follow)."""
    rows = await conn.fetch(
        _DELIVERY
        + """ where d.endpoint_id = $1 and ($2::text is null or d.status = $2) and ($3::bigint is null or d.id < $3)
              order by d.id desc limit $4""",
        endpoint_id,
        status,
        before_id,
        limit,
    )
    return [_delivery(r) for r in rows]


async def get_delivery(conn: Conn, endpoint_id: int, delivery_id: int) -> Delivery | None:
    row = await conn.fetchrow(_DELIVERY + " where d.endpoint_id = $1 and d.id = $2", endpoint_id, delivery_id)
    return None if row is None else _delivery(row)


async def redeliver(conn: Conn, endpoint_id: int, delivery_id: int) -> Delivery | None:
    """Send again now, with a fresh retry schedule (delivered or failed alike; same webhook-id)."""
    found = await conn.fetchval(
        """update webhook_deliveries d set status = 'pending', tries = 0, next_attempt_at = now()
           from webhook_endpoints e
           where d.endpoint_id = $1 and d.id = $2 and e.id = d.endpoint_id and e.deleted_at is null
           returning d.id""",
        endpoint_id,
        delivery_id,
    )
    return None if found is None else await get_delivery(conn, endpoint_id, delivery_id)


class OrderNotification(msgspec.Struct, frozen=True, kw_only=True):
    """One outbox notification of an order and, once fanned out, its delivery to one endpoint (the ops console)."""

    notification_id: int
    type: str
    order_version: int
    anomaly_id: int | None
    created_at: datetime
    endpoint_id: int | None = None  # None: no endpoint takes it (or not fanned out yet)
    url: str | None = None
    status: str | None = None  # pending, delivered, failed
    tries: int | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


async def for_order(conn: Conn, order_id: str, limit: int = 500) -> list[OrderNotification]:
    """What the shop was told about an order: every notification, with each endpoint's delivery."""
    rows = await conn.fetch(
        """select n.id as notification_id, n.type, n.order_version, n.anomaly_id, n.created_at,
                  d.endpoint_id, e.url, d.status, d.tries, d.last_attempt_at, d.delivered_at
           from notifications n
           left join webhook_deliveries d on d.notification_id = n.id
           left join webhook_endpoints e on e.id = d.endpoint_id
           where n.order_id = $1
           order by n.id, d.endpoint_id
           limit $2""",
        order_id,
        limit,
    )
    return msgspec.convert([dict(r) for r in rows], list[OrderNotification])
