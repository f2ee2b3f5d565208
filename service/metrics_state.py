"""State gauges read at scrape time from what every process shares (PostgreSQL, Redis).

Counted here rather than in a process: a breaker held by some worker, the arq queue and the open
anomalies are facts of the shared stores, so N `serve` workers report them once each scrape,
never N times (see service/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import asyncpg
from arq import ArqRedis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from service import breakers

log = logging.getLogger(__name__)

# The names, for deploy/ and its test.
BREAKER_OPEN = "payrecon_breaker_open"
QUEUE_DEPTH = "payrecon_queue_depth"
ANOMALIES_OPEN = "payrecon_anomalies_open"
STATE_UP = "payrecon_state_up"
NAMES = (BREAKER_OPEN, QUEUE_DEPTH, ANOMALIES_OPEN, STATE_UP)


class Snapshot(Collector):
    """Families computed before the scrape renders (collectors are synchronous; our stores are not)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families

    def describe(self) -> Iterable[Metric]:
        return []


async def snapshot(pool: asyncpg.Pool, redis: ArqRedis, queue_name: str) -> Snapshot:
    """Read the state gauges; a store that does not answer is reported by `payrecon_state_up`, not a 500."""
    up = GaugeMetricFamily(STATE_UP, "Whether the scrape could read the shared store", labels=["store"])
    families: list[Metric] = []
    try:
        async with pool.acquire(timeout=2.0) as conn:
            states = await breakers.states(conn)
            open_anomalies = await conn.fetch(
                "select kind, count(*) as n from anomalies where status = 'open' group by kind", timeout=2.0
            )
    except Exception as exc:
        log.warning("metrics: PostgreSQL state not read: %s", exc)
        up.add_metric(["postgresql"], 0)
    else:
        up.add_metric(["postgresql"], 1)
        breaker = GaugeMetricFamily(
            BREAKER_OPEN, "1 while the account's reconciler circuit breaker is open", labels=["provider", "account"]
        )
        for state in states:
            breaker.add_metric([state.provider, state.account], 1 if state.open else 0)
        anomalies = GaugeMetricFamily(ANOMALIES_OPEN, "Anomalies not yet resolved, by kind", labels=["kind"])
        for row in open_anomalies:
            anomalies.add_metric([row["kind"]], row["n"])
        families += [breaker, anomalies]
    try:
        async with asyncio.timeout(2.0):
            depth = await redis.zcard(queue_name)
    except Exception as exc:
        log.warning("metrics: Redis queue depth not read: %s", exc)
        up.add_metric(["redis"], 0)
    else:
        up.add_metric(["redis"], 1)
        queue = GaugeMetricFamily(QUEUE_DEPTH, "Jobs waiting in the arq queue", labels=["queue"])
        queue.add_metric([queue_name], depth)
        families.append(queue)
    families.append(up)
    return Snapshot(families)
