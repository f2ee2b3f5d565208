"""Who takes part in a run, and whether they are still alive: heartbeats in `run_participants` (issue 14.5).

Every `execute` of a run is a participant: it joins (a row), beats every third of
`PAYRECON_RUN_HEARTBEAT` while it works, and leaves when done. A participant that has not beaten
for a whole heartbeat period is **gone** (SIGKILLed, frozen, cut off from PostgreSQL):
- its order leases are released at once, so another participant checks those orders now, not
  after the 10-minute lease (`release_gone`);
- if it led a run, a live worker claims the lead (`claim_lead`) and finishes the run — within
  two heartbeat periods of the death, since every worker's watchdog looks every third of one.
A gone participant that was only slow finds its row left when it next beats: it stops claiming,
and as it no longer leads, its end of the run is refused (service.runs.finish_run `lead=`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg

from service.db import Conn, is_unavailable

log = logging.getLogger(__name__)

BEATS_PER_PERIOD = 3  # a participant beats this often per heartbeat period; one period of silence: gone


def new_id() -> str:
    """A participant id that says where to look: host, pid, and a token for this part in this run."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


_JOIN = """
insert into run_participants (run_id, participant, beat_every) values ($1, $2, $3)
on conflict (run_id, participant) do update set beat_at = now(), left_at = null"""

# The lead may be claimed when nobody leads, or the lead is gone (its row left, or silent for a
# period). `waited`: a run nobody ever led (an API run still queued) is only taken once it has
# waited that long, so the worker its job reaches normally leads it.
_CLAIM_LEAD = """
update reconcile_runs r set lead = $2
where r.id = $1 and r.status = 'running'
  and (r.lead = $2
       or (r.lead is null and r.started_at < now() - make_interval(secs => $3))
       or (r.lead is not null and not exists (
             select 1 from run_participants p
             where p.run_id = r.id and p.participant = r.lead and p.left_at is null
               and p.beat_at > now() - make_interval(secs => p.beat_every))))
returning r.id"""

# Participants silent for a whole period are gone: their rows are left, and the leases they held
# released (the backoff step of that claim undone: the order was never asked about), so any
# participant of the run can claim those orders again.
_RELEASE_GONE = """
with gone as (
    update run_participants p set left_at = now()
    where p.left_at is null and p.beat_at < now() - make_interval(secs => p.beat_every)
      and ($1::bigint is null or p.run_id = $1)
    returning p.run_id, p.participant
), freed as (
    update order_checks c
    set lease_run_id = null, lease_until = null, lease_holder = null,
        attempts = greatest(c.attempts - 1, 0), next_check_at = least(c.next_check_at, now())
    from gone where c.lease_run_id = gone.run_id and c.lease_holder = gone.participant
    returning c.order_id
)
select gone.run_id, gone.participant, (select count(*) from freed) as freed from gone"""

# Running runs this process might help or take over: every running run, with whether its lead
# is alive. (A handful at a time: one per trigger slot, plus API and CLI runs.)
_RUNNING = """
select r.id, r.lead, r.started_at,
       exists (select 1 from run_participants p
               where p.run_id = r.id and p.participant = r.lead and p.left_at is null
                 and p.beat_at > now() - make_interval(secs => p.beat_every)) as lead_alive
from reconcile_runs r where r.status = 'running' order by r.id"""


async def release_gone(conn: Conn, run_id: int | None = None) -> int:
    """Declare silent participants gone and release their leases; returns how many leases were freed."""
    rows = await conn.fetch(_RELEASE_GONE, run_id)
    freed = int(rows[0]["freed"]) if rows else 0  # leases of all the participants found gone at once
    for row in rows:
        log.warning("run %s: participant %s missed its heartbeat: gone", row["run_id"], row["participant"])
    if freed:
        log.warning("released %s order leases held by gone participants", freed)
    return freed


async def running_runs(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(_RUNNING)


class Participant:
    """One process's part in one run: joined, beating, and whether it leads."""

    def __init__(self, pool: asyncpg.Pool, run_id: int, beat_every: float, participant: str | None = None) -> None:
        self.pool = pool
        self.run_id = run_id
        self.beat_every = beat_every
        self.id = participant or new_id()
        self.expelled = False  # declared gone by someone else while it was only slow

    async def join(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(_JOIN, self.run_id, self.id, self.beat_every)

    async def claim_lead(self, *, waited: float = 0.0) -> bool:
        """Become the run's lead if nobody (alive) leads it; True when this participant leads."""
        async with self.pool.acquire() as conn:
            return await conn.fetchval(_CLAIM_LEAD, self.run_id, self.id, waited) is not None

    async def leave(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "update run_participants set left_at = now() where run_id = $1 and participant = $2",
                self.run_id,
                self.id,
            )

    async def beat(self) -> None:
        async with self.pool.acquire() as conn:
            alive = await conn.fetchval(
                """update run_participants set beat_at = now()
                   where run_id = $1 and participant = $2 and left_at is null returning true""",
                self.run_id,
                self.id,
            )
            if not alive and not self.expelled:
                self.expelled = True
                log.warning("run %s: %s was declared gone (missed heartbeats); it stops claiming", self.run_id, self.id)
            await release_gone(conn, self.run_id)

    async def _beating(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.beat_every / BEATS_PER_PERIOD)
            try:
                await self.beat()
            except Exception as exc:  # a missed beat is survivable; the next one may land
                if not failing:
                    log.warning(
                        "run %s: heartbeat failed (%s: %s)%s",
                        self.run_id,
                        type(exc).__name__,
                        exc,
                        "" if is_unavailable(exc) else "; see traceback",
                        exc_info=None if is_unavailable(exc) else exc,
                    )
                failing = True
            else:
                failing = False

    @contextlib.asynccontextmanager
    async def taking_part(self) -> AsyncIterator[Participant]:
        """Joined and beating for the duration of the block; left after it (best effort)."""
        await self.join()
        beating = asyncio.create_task(self._beating(), name=f"heartbeat run {self.run_id}")
        try:
            yield self
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            try:
                await self.leave()
            except Exception as exc:  # the database may be what failed: the silence says the same
                log.info("run %s: could not record leaving (%s: %s)", self.run_id, type(exc).__name__, exc)
