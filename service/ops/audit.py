"""The `operator_actions` table: who did what in the ops console, when and why — and the anomaly work it records.

Every action is a row with the key's name, a required note and what it touched, written in the
same transaction as the change itself (an anomaly acknowledged or resolved), so the audit never
says something happened that did not, or misses something that did. An action carried out by a
job ("check this order now", a run) gets its result filled in when the job ends (`finish`).

Anomalies are the ledger's table; the console only moves their review state (acknowledged,
resolved). It never writes `orders`: a fix goes through the ledger (a check now, a replay).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from service.apikeys import ApiKey
from service.db import Conn

MAX_NOTE = 2000


class Action(StrEnum):
    ACKNOWLEDGE_ANOMALY = "anomaly.acknowledge"
    RESOLVE_ANOMALY = "anomaly.resolve"
    CHECK_ORDER = "order.check"
    START_RUN = "run.start"
    REPLAY = "delivery.replay"
    REPLAY_DRY_RUN = "delivery.replay_dry_run"


class NoteError(ValueError):
    """An action without a reason: the audit needs one."""


class OperatorAction(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    action: Action
    key_name: str
    note: str
    order_id: str | None
    anomaly_id: int | None
    run_id: int | None
    rejected_delivery_id: int | None
    result: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


class AnomalyView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str
    order_id: str | None
    event_id: int | None
    detail: dict[str, Any]
    status: str
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None


def clean_note(note: str | None) -> str:
    text = (note or "").replace("\x00", "").strip()
    if not text:
        raise NoteError("a note is required: say why (it goes into the audit trail)")
    if len(text) > MAX_NOTE:
        raise NoteError(f"a note is at most {MAX_NOTE} characters")
    return text


_COLUMNS = (
    "id, action, key_name, note, order_id, anomaly_id, run_id, rejected_delivery_id, result, created_at, finished_at"
)


async def record(
    conn: Conn,
    action: Action,
    key: ApiKey,
    note: str,
    *,
    order_id: str | None = None,
    anomaly_id: int | None = None,
    run_id: int | None = None,
    rejected_delivery_id: int | None = None,
    result: dict[str, Any] | None = None,
) -> OperatorAction:
    row = await conn.fetchrow(
        f"""insert into operator_actions (action, key_id, key_name, note, order_id, anomaly_id, run_id,
                                          rejected_delivery_id, result, finished_at)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9, case when $9::jsonb is null then null else now() end)
            returning {_COLUMNS}""",
        action.value,
        key.id,
        key.name,
        clean_note(note),
        order_id,
        anomaly_id,
        run_id,
        rejected_delivery_id,
        result,
    )
    return msgspec.convert(dict(row), OperatorAction)  # type: ignore[arg-type]


async def finish(conn: Conn, action_id: int, result: dict[str, Any]) -> None:
    """The result of an action a job carried out (the job calls this when it ends)."""
    await conn.execute("update operator_actions set result = $2, finished_at = now() where id = $1", action_id, result)


async def get(conn: Conn, action_id: int) -> OperatorAction | None:
    row = await conn.fetchrow(f"select {_COLUMNS} from operator_actions where id = $1", action_id)
    return None if row is None else msgspec.convert(dict(row), OperatorAction)


async def list_actions(
    conn: Conn,
    *,
    limit: int = 100,
    before_id: int | None = None,
    action: Action | None = None,
    order_id: str | None = None,
    anomaly_id: int | None = None,
    rejected_delivery_id: int | None = None,
) -> list[OperatorAction]:
    """Newest first."""
    rows = await conn.fetch(
        f"""select {_COLUMNS} from operator_actions
            where ($1::bigint is null or id < $1) and ($2::text is null or action = $2)
              and ($3::text is null or order_id = $3) and ($4::bigint is null or anomaly_id = $4)
              and ($5::bigint is null or rejected_delivery_id = $5)
            order by id desc limit $6""",
        before_id,
        None if action is None else action.value,
        order_id,
        anomaly_id,
        rejected_delivery_id,
        limit,
    )
    return msgspec.convert([dict(r) for r in rows], list[OperatorAction])


# --- anomalies: the review state only --------------------------------------------------------------

_ANOMALY = "id, kind, order_id, event_id, detail, status, created_at, acknowledged_at, resolved_at"


async def anomaly(conn: Conn, anomaly_id: int) -> AnomalyView | None:
    row = await conn.fetchrow(f"select {_ANOMALY} from anomalies where id = $1", anomaly_id)
    return None if row is None else msgspec.convert(dict(row), AnomalyView)


async def list_anomalies(
    conn: Conn, *, status: str | None, kind: str | None, before_id: int | None, limit: int
) -> list[AnomalyView]:
    """Newest first; `status` is open, acknowledged (open and owned), resolved, or None for all."""
    rows = await conn.fetch(
        f"""select {_ANOMALY} from anomalies
            where ($1::text is null
                   or ($1 = 'open' and status = 'open' and acknowledged_at is null)
                   or ($1 = 'acknowledged' and status = 'open' and acknowledged_at is not null)
                   or ($1 = 'resolved' and status = 'resolved'))
              and ($2::text is null or kind = $2) and ($3::bigint is null or id < $3)
            order by id desc limit $4""",
        status,
        kind,
        before_id,
        limit,
    )
    return msgspec.convert([dict(r) for r in rows], list[AnomalyView])


async def acknowledge(conn: Conn, anomaly_id: int, key: ApiKey, note: str) -> OperatorAction | None:
    """Mark an open anomaly as owned; None when it is not open (resolved meanwhile, or no such id)."""
    note = clean_note(note)
    async with conn.transaction():
        row = await conn.fetchrow(
            """update anomalies set acknowledged_at = coalesce(acknowledged_at, now())
               where id = $1 and status = 'open' returning id, order_id""",
            anomaly_id,
        )
        if row is None:
            return None
        return await record(
            conn, Action.ACKNOWLEDGE_ANOMALY, key, note, anomaly_id=anomaly_id, order_id=row["order_id"]
        )


async def resolve(conn: Conn, anomaly_id: int, key: ApiKey, note: str) -> OperatorAction | None:
    """Close an open anomaly; None when it was not open. The order is untouched: ops fixed it elsewhere."""
    note = clean_note(note)
    async with conn.transaction():
        row = await conn.fetchrow(
            """update anomalies set status = 'resolved', resolved_at = now()
               where id = $1 and status = 'open' returning id, order_id""",
            anomaly_id,
        )
        if row is None:
            return None
        return await record(conn, Action.RESOLVE_ANOMALY, key, note, anomaly_id=anomaly_id, order_id=row["order_id"])
