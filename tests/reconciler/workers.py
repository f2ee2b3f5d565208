"""Workers on real Redis for the reconciler's tests: a queue, burst workers, cron jobs enqueued as arq would."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import msgspec
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

from reconciler.worker import close_worker, create_worker
from service.jobs import JOB_DECODE, JOB_ENCODE
from service.settings import Settings
from tests.reconciler.stage import Stage


@contextlib.asynccontextmanager
async def queue(settings: Settings) -> AsyncIterator[ArqRedis]:
    assert settings.redis_url is not None
    redis = await create_pool(
        RedisSettings.from_dsn(settings.redis_url),
        job_serializer=JOB_ENCODE,
        job_deserializer=JOB_DECODE,
        default_queue_name=settings.queue_name,
    )
    try:
        yield redis
    finally:
        await redis.delete(settings.queue_name)
        await redis.aclose()


def burst_worker(
    stage: Stage, settings: Settings, log: list[str], barrier: asyncio.Barrier | None = None
) -> tuple[Worker, httpx.AsyncClient]:
    http = stage.client(log)
    if barrier is not None:
        # Each worker's first status query waits until every worker has made one: whatever the
        # machine's load, no worker can finish the run before the others have claimed a batch.
        first = True

        async def meet(_: httpx.Request) -> None:
            nonlocal first
            if first:
                first = False
                async with asyncio.timeout(20):
                    await barrier.wait()

        http.event_hooks["request"].append(meet)
    worker = create_worker(
        settings,
        gateways=stage.adapters,
        http=http,
        burst=True,
        poll_delay=0,
        handle_signals=False,
        max_jobs=1,  # one job each: two jobs on two workers are two processes' worth of helpers
        queue_read_limit=10,  # …and each sees past the job the other has started
    )
    return worker, http


async def run_workers(workers: list[tuple[Worker, httpx.AsyncClient]]) -> None:
    try:
        await asyncio.gather(*(w.main() for w, _ in workers))
    finally:
        for w, http in workers:
            await close_worker(w)
            await http.aclose()


def queries_per_reference(stage: Stage, logs: list[list[str]]) -> Counter[str]:
    lines = [line for log in logs for line in log]
    return Counter({order: sum(1 for line in lines if ref in line) for order, (_, ref) in stage.references.items()})


def slow(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, reconcile_grace=0.05, reconcile_batch=4)


async def enqueue_slot(redis: ArqRedis, job: str, at: datetime, copies: int = 1) -> None:
    """`copies` cron jobs `job` scheduled at `at`, as if arq's unique cron id failed: each under its own id.

    `at` may be a day or more ago (a slot's score is all the job knows of time): the job is kept
    for a few minutes from now, where arq would let one scheduled long ago expire at once.
    """
    for n in range(copies):
        job_id = f"cron:{job}:{uuid.uuid4().hex}:{n}"
        assert await redis.enqueue_job(f"cron:{job}", _job_id=job_id, _defer_until=at, _expires=timedelta(minutes=5))
