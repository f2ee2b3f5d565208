"""Refused deliveries cost a bounded number of rows: token buckets decide, the rest are tallied.

Webhook URLs are public, so a flood of forged or unsigned requests must not become a flood of
`rejected_deliveries` inserts competing with real payments for the database. Per (gateway,
reason, source) a token bucket — `PAYRECON_REFUSAL_SAMPLE_BURST` tokens, refilled at
`PAYRECON_REFUSAL_SAMPLE_RATE` per second — decides which refusals are stored in full (row, raw
request, log line); a second bucket over all keys (`PAYRECON_REFUSAL_SAMPLE_TOTAL` per second)
caps the sum, so an attacker spreading over many source addresses gains nothing. Everything
else is counted: `payrecon_webhooks_refusals_tallied_total` at once, and every
`PAYRECON_REFUSAL_TALLY_EVERY` seconds one `refusal_tallies` row per key (reason, source, count,
first and last seen, one sample body hash) — what ops need to see an attack and where it comes
from, at a cost that does not grow with its rate.

Verified deliveries never pass through here: a held delivery is always stored (service/ingest.py).

State is per process (each `serve` worker samples on its own) and bounded in memory. A bucket
that has filled up again is the same as a new one, so it is dropped: the buckets held are those
of keys refused within the last burst/rate seconds (20 s by default), at most `MAX_BUCKETS` of
them (least recently used go first: a forgotten key simply starts full again). Without that,
every source ever refused kept its bucket (about 340 bytes) until 10,000 of them had: 3.4 MB per
worker that even a slow trickle of junk from ever new addresses fills (bench/memory.py, issue 14.7).
Tallies: at most `MAX_TALLIES` keys (beyond that, counts go to the key's `*` source), drained
at every flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import msgspec
from litestar import Litestar

from service.metrics import WEBHOOKS_REFUSALS_TALLIED
from service.settings import Settings

log = logging.getLogger(__name__)

MAX_BUCKETS = 10_000
MAX_TALLIES = 1_000
ANY_SOURCE = "*"

Key = tuple[str, str, str]  # (provider, reason, source)


def source_of(address: str | None) -> str:
    """The source a bucket is kept for: the address, an IPv6 client by its /64 (one host often holds a whole /64)."""
    if not address:
        return "?"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed.ipv4_mapped or parsed) if isinstance(parsed, ipaddress.IPv6Address) else str(parsed)


class TokenBucket:
    """`burst` tokens, refilled continuously at `rate` per second; `take` spends one if there is one."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.updated = rate, burst, burst, now

    def full(self, now: float) -> bool:
        """Refilled to the burst by `now`: indistinguishable from a new bucket."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Tally(msgspec.Struct, kw_only=True):
    """Refusals of one key not stored in full since the last flush."""

    provider: str
    reason: str
    source: str
    count: int
    first_seen: datetime
    last_seen: datetime
    sample_body_sha256: str  # the first one's: enough to recognise a replayed forgery


class RefusalSampler:
    """Decides per refusal: store it in full (`admit` → True), or count it (`tally`)."""

    def __init__(self, *, rate: float, burst: int, total: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.total = TokenBucket(total, max(float(burst), total), clock())
        self.buckets: OrderedDict[Key, TokenBucket] = OrderedDict()
        self.tallies: dict[Key, Tally] = {}

    def admit(self, key: Key) -> bool:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            self._forget_full(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self.buckets) > MAX_BUCKETS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        # The key's own bucket first: a source over its budget must not drain the shared one.
        return bucket.take(now) and self.total.take(now)

    def _forget_full(self, now: float) -> None:
        # Least recently used first: once the oldest is not full yet, the younger ones (used later,
        # so refilling for less time) are kept too. Each bucket is dropped once: O(1) amortized.
        while self.buckets:
            oldest = next(iter(self.buckets.values()))
            if not oldest.full(now):
                return
            self.buckets.popitem(last=False)

    def tally(self, key: Key, body_sha256: str, at: datetime) -> None:
        provider, reason, _ = key
        WEBHOOKS_REFUSALS_TALLIED.labels(provider, reason).inc()
        if key not in self.tallies and len(self.tallies) >= MAX_TALLIES:
            key = (provider, reason, ANY_SOURCE)
        found = self.tallies.get(key)
        if found is None:
            self.tallies[key] = Tally(
                provider=key[0],
                reason=key[1],
                source=key[2],
                count=1,
                first_seen=at,
                last_seen=at,
                sample_body_sha256=body_sha256,
            )
        else:
            found.count += 1
            found.last_seen = max(found.last_seen, at)

    def drain(self) -> list[Tally]:
        drained, self.tallies = list(self.tallies.values()), {}
        return drained

    def restore(self, tallies: list[Tally]) -> None:
        """Put back tallies a flush could not write (they merge with what came since)."""
        for tally in tallies:
            key = (tally.provider, tally.reason, tally.source)
            found = self.tallies.get(key)
            if found is None:
                self.tallies[key] = tally
            else:
                found.count += tally.count
                found.first_seen = min(found.first_seen, tally.first_seen)
                found.last_seen = max(found.last_seen, tally.last_seen)


_INSERT_TALLY = """
insert into refusal_tallies (provider, reason, source, count, first_seen, last_seen, sample_body_sha256)
values ($1, $2, $3, $4, $5, $6, $7)
"""


async def flush(pool: asyncpg.Pool, sampler: RefusalSampler, *, wait: float = 5.0) -> int:
    """Write one row per tallied key; on failure the counts are kept for the next flush. Returns rows written."""
    tallies = sampler.drain()
    if not tallies:
        return 0
    try:
        async with pool.acquire(timeout=wait) as conn:
            await conn.executemany(
                _INSERT_TALLY,
                [
                    (t.provider, t.reason, t.source, t.count, t.first_seen, t.last_seen, t.sample_body_sha256)
                    for t in tallies
                ],
                timeout=wait,
            )
    except Exception as exc:  # the database is away: keep counting, write next time
        sampler.restore(tallies)
        log.warning("refusal tallies not written (%s: %s); kept for the next flush", type(exc).__name__, exc)
        return 0
    top = sorted(tallies, key=lambda t: -t.count)[:3]
    log.warning(
        "refused deliveries counted without a row since the last flush: %d (%s)",
        sum(t.count for t in tallies),
        ", ".join(f"{t.provider}/{t.reason} from {t.source}: {t.count}" for t in top),
    )
    return len(tallies)


def sampler_for(settings: Settings) -> RefusalSampler:
    return RefusalSampler(
        rate=settings.refusal_sample_rate,
        burst=settings.refusal_sample_burst,
        total=settings.refusal_sample_total,
    )


@asynccontextmanager
async def tallying(app: Litestar) -> AsyncIterator[None]:
    """App lifespan: flush the sampler's tallies every PAYRECON_REFUSAL_TALLY_EVERY seconds, and at shutdown."""
    settings: Settings = app.state.settings
    sampler: RefusalSampler = app.state.refusals

    async def every_period() -> None:
        while True:
            await asyncio.sleep(settings.refusal_tally_every)
            await flush(app.state.pool, sampler)

    task = asyncio.create_task(every_period())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await flush(app.state.pool, sampler)
