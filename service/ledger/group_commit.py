"""Group commit: the webhook events one process receives at once, applied in one statement and one commit.

Why: under load a webhook's cost is mostly what surrounds its one statement (`ledger_apply`): the
pool, the driver's send and receive, and PostgreSQL's fixed cost per statement and per commit (the
WAL flush). The events that arrive while a batch is being applied go together as the next batch
(service/coalesce.py): `ledger_apply_batch` runs `ledger_apply` for each in a subtransaction of its
own, all in one transaction. With nothing in flight an event goes at once, alone.

What each event hears is what it would hear alone:
- every event of a batch is answered after the batch commits, never before (nothing acknowledged
  is lost); a batch that cannot reach the database is every event's error ("retry later");
- an event the batch refuses (it releases quarantined events, PostgreSQL refuses one of its values,
  a deadlock with another process's batch) was rolled back alone; it is applied again by itself,
  through `ledger.apply`, whose answer or error is then its own. So is every event of a batch the
  driver could not even send (a value it cannot encode).
Events of one batch come from concurrent deliveries: no order between them is lost.
"""

from __future__ import annotations

import logging
import time

import asyncpg
import msgspec

from providers.base import PaymentEvent
from service import metrics
from service.coalesce import Coalescer
from service.failures import retry_can_cure
from service.ledger import sql
from service.ledger.apply_event import Applied, applied_of, apply, apply_arguments, count_outcomes
from service.ledger.locks import reference_key
from service.model import Outcome, RawDelivery, Source
from service.storable import storable

log = logging.getLogger(__name__)

# Events per statement at most: each is a subtransaction, and PostgreSQL caches 64 per backend.
BATCH = 32


class _Write(msgspec.Struct, frozen=True):
    event: PaymentEvent
    source: Source
    raw: RawDelivery | None


class GroupCommit:
    """`apply(event, source, raw=...)` as `ledger.apply` answers it, with concurrent calls committed together."""

    def __init__(self, pool: asyncpg.Pool, *, batch: int = BATCH, parallel: int = 1) -> None:
        self._pool = pool
        self._batches: Coalescer[_Write, Applied | None] = Coalescer(self._send, size=batch, parallel=parallel)

    async def apply(self, event: PaymentEvent, source: Source, *, raw: RawDelivery | None = None) -> Outcome:
        started = time.perf_counter()
        source = Source(source)
        event = storable(event)  # as ledger.apply: NUL spelled out, integers within bigint (else UnstorableError)
        applied = await self._batches.submit(_Write(event, source, raw))
        if applied is None:  # refused in its batch and rolled back: alone, it is answered (or fails) for itself
            return await apply(self._pool, event, source, raw=raw)
        metrics.LEDGER_APPLY_SECONDS.observe(time.perf_counter() - started)
        count_outcomes([applied])
        return applied.outcome

    async def _send(self, writes: list[_Write]) -> list[Applied | None]:
        metrics.LEDGER_BATCH_EVENTS.observe(len(writes))
        # In reference order (service/ledger/locks.py): two processes' batches then take the locks of
        # their events in the same order, where arrival order would let them wait on each other in a
        # cycle (Stripe sends a PaymentIntent's events at once, and two processes may each get some).
        order = sorted(range(len(writes)), key=lambda i: _lock_order(writes[i].event))
        arguments = zip(
            *(apply_arguments(writes[i].event, writes[i].source, writes[i].raw) for i in order), strict=True
        )
        try:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(sql.APPLY_BATCH, *(list(column) for column in arguments))
        except Exception as error:
            if retry_can_cure(error):
                raise  # the database is away or busy: every event of the batch is answered "retry later"
            # The driver or PostgreSQL refused the statement itself, for one event's value: alone,
            # each event finds out whether it is the one.
            log.warning("ledger batch of %d refused (%s: %s); each alone", len(writes), type(error).__name__, error)
            return [None] * len(writes)
        done: list[Applied | None] = [None] * len(writes)
        for row in rows:
            position = order[row["ordinal"] - 1]
            write = writes[position]
            if row["refused"] is None:
                done[position] = applied_of(row, write.event.provider, write.source, current=True)
            elif row["refused"] != sql.SLOW_PATH:
                log.info("ledger batch: an event was refused with SQLSTATE %s; applying it alone", row["refused"])
        return done


def _lock_order(event: PaymentEvent) -> tuple[str, str]:
    return reference_key(event.provider, event.account, event.reference), event.dedupe_key
