"""What the console's overview page shows: a few aggregates over the ledger, the runs and the refusals.

Read-only, and each one bounded: the last runs, the last 24 hours of refusals, counts grouped
by small domains (gateway × status, anomaly kind).
"""

from __future__ import annotations

from typing import Any

import msgspec

from service import breakers, runs
from service.breakers import BreakerState
from service.db import Conn
from service.runs import ReconcileRun


class StatusCount(msgspec.Struct, frozen=True):
    provider: str
    status: str
    n: int


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    orders: dict[str, dict[str, int]]  # gateway → status → orders
    statuses: list[str]  # the columns, in the ledger's layer order
    open_anomalies: dict[str, int]  # kind → open anomalies
    runs: list[ReconcileRun]  # newest first
    rejected_24h: dict[str, int]  # reason → refusals in the last 24 hours
    breakers: list[BreakerState]


STATUS_ORDER = [
    "pending",
    "processing",
    "authorized",
    "failed",
    "canceled",
    "succeeded",
    "partially_refunded",
    "refunded",
]


async def overview(conn: Conn, *, run_limit: int = 30) -> Overview:
    by_status = await conn.fetch("select provider, status, count(*) as n from orders group by 1, 2")
    orders: dict[str, dict[str, int]] = {}
    for row in by_status:
        orders.setdefault(row["provider"], {})[row["status"]] = row["n"]
    anomalies = await conn.fetch(
        "select kind, count(*) as n from anomalies where status = 'open' group by kind order by kind"
    )
    rejected = await conn.fetch(
        """select reason, count(*) as n from rejected_deliveries
           where received_at > now() - interval '24 hours' group by reason order by n desc, reason"""
    )
    return Overview(
        orders=dict(sorted(orders.items())),
        statuses=STATUS_ORDER,
        open_anomalies={r["kind"]: r["n"] for r in anomalies},
        runs=await runs.list_runs(conn, before_id=None, limit=run_limit),
        rejected_24h={r["reason"]: r["n"] for r in rejected},
        breakers=await breakers.states(conn),
    )


def finding_count(run: ReconcileRun, kind: str) -> int:
    findings: dict[str, Any] = run.counts.get("findings") or {}
    return int(findings.get(kind, 0))
