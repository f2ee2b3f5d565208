"""Every worker's eye on running runs: take over a run whose lead is gone, help every other one (issue 14.5).

A worker runs this loop beside its arq jobs, every third of `PAYRECON_RUN_HEARTBEAT`:
1. participants silent for a whole period are declared gone and their leases released;
2. a running run whose lead is gone (or that nobody led for a period: its queued job was lost)
   is led from here: this worker claims the lead and finishes the run;
3. a running run this worker takes no part in gets it as a helper, once — so a run started by
   the API or the CLI is split across the workers like a cron run, with no job to enqueue.
It needs PostgreSQL only: a Redis outage does not stop takeovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from reconciler.participants import BEATS_PER_PERIOD, Participant, release_gone, running_runs
from reconciler.run import RunEnv, execute
from service import runs
from service.db import is_unavailable

log = logging.getLogger(__name__)


class Watchdog:
    """The loop above, with the run tasks it started (cancelled with it: their heartbeats stop, others take over)."""

    def __init__(self, env: RunEnv, *, max_runs: int) -> None:
        self.env = env
        self.max_runs = max_runs
        self.tasks: set[asyncio.Task[object]] = set()
        self.helped: set[int] = set()  # runs this worker joined as a helper once already
        self._failing = False

    async def run(self) -> None:
        period = self.env.settings.run_heartbeat / BEATS_PER_PERIOD
        while True:
            try:
                await self.look()
            except Exception as exc:
                if not self._failing:  # one line per outage, not one per look
                    log.warning(
                        "run watchdog: cannot look at running runs (%s: %s)",
                        type(exc).__name__,
                        exc,
                        exc_info=None if is_unavailable(exc) else exc,
                    )
                self._failing = True
            else:
                if self._failing:
                    log.warning("run watchdog: looking at running runs again")
                self._failing = False
            await asyncio.sleep(period)

    async def look(self) -> None:
        env = self.env
        async with env.pool.acquire() as conn:
            await release_gone(conn)
            running = await running_runs(conn)
        self.helped &= {row["id"] for row in running}
        for row in running:
            run_id = row["id"]
            if run_id in env.leading or len(self.tasks) >= self.max_runs:
                continue
            if not row["lead_alive"]:
                me = Participant(env.pool, run_id, env.settings.run_heartbeat)
                await me.join()
                if await me.claim_lead(waited=env.settings.run_heartbeat):
                    log.warning("run %s: its lead %s is gone; %s takes it over", run_id, row["lead"], me.id)
                    await self._start(run_id, participant=me)
                else:
                    await me.leave()
            elif run_id not in self.helped and run_id not in env.helping:
                self.helped.add(run_id)
                await self._start(run_id, participant=None)

    async def _start(self, run_id: int, *, participant: Participant | None) -> None:
        async with self.env.pool.acquire() as conn:
            run = await runs.get_run(conn, run_id)
        if run is None:
            return
        lead = participant is not None
        task: asyncio.Task[object] = asyncio.create_task(
            execute(self.env, run, lead=lead, participant=participant),
            name=f"run {run_id} ({'lead' if lead else 'helper'})",
        )
        self.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[object]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("%s ended with %s: %s", task.get_name(), type(error).__name__, error)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task
