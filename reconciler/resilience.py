"""A worker that rides out a Redis outage instead of exiting (issue 14.4).

arq's worker exits on the first Redis error of its poll loop (a traceback in `_poll_iteration`,
exit code 1), so a Redis restart used to stop every worker until someone started them by hand.
The choice made here: **the worker itself waits and resumes**; the supervisor (systemd
`Restart=on-failure`, a Kubernetes restart policy) stays only a backstop for a crash. A restart
would lose nothing, but it would also start every run again from cold, reconnect PostgreSQL and
log a traceback per outage; waiting in place keeps running jobs going (they need PostgreSQL
and the gateways, not Redis) and logs exactly one line when Redis goes and one when it is back.

While Redis is down: no new job is picked up, no cron job is enqueued (a slot that passes is
not made up: the next slot's run covers the same orders), results of jobs that end then are
lost (a run's outcome is in PostgreSQL anyway), and polls back off from 0.5 s to 10 s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq.connections import create_pool
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# What redis-py raises when the server is gone, restarting or loading its dataset (BusyLoadingError
# is a ConnectionError); OSError for a refused or reset socket that redis-py did not wrap.
REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
FIRST_RETRY = 0.5  # seconds before the first retry; doubles up to MAX_RETRY
MAX_RETRY = 10.0


class RedisReachability:
    """Redis up/down as the worker last saw it, logged on change only, with the retry delay it implies."""

    def __init__(self) -> None:
        self.down = False
        self.delay = FIRST_RETRY

    def lost(self, error: BaseException) -> float:
        """Note a failed Redis call; return how long to wait before the next attempt."""
        if not self.down:
            self.down = True
            self.delay = FIRST_RETRY
            log.warning(
                "Redis unreachable (%s: %s); worker waiting for it, running jobs go on",
                type(error).__name__,
                error,
            )
        else:
            self.delay = min(self.delay * 2, MAX_RETRY)
        return self.delay

    def back(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis reachable again; worker resumes picking up jobs")


class ResilientWorker(Worker):
    """arq's Worker, except that a Redis outage is waited out (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis_state = RedisReachability()

    async def main(self) -> None:
        # arq's own connect retries 5 times then raises: a worker started during an outage waits.
        while self._pool is None:
            try:
                self._pool = await create_pool(
                    self.redis_settings,
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                    retry=self.redis_settings.conn_retries if self.redis_settings else 0,
                )
            except REDIS_UNAVAILABLE as error:
                await asyncio.sleep(self.redis_state.lost(error))
        self.redis_state.back()
        await super().main()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_UNAVAILABLE as error:
            if self.burst:
                raise  # a burst run is a one-off command: say it failed rather than wait
            await asyncio.sleep(self.redis_state.lost(error))
            return
        self.redis_state.back()
