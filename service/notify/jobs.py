"""The arq jobs of outbound webhooks. They live in `service` (the API enqueues them by name) and the
worker registers them (reconciler/worker.py), as it does the reconciliation jobs.

Nothing depends on an enqueue arriving: the cron sweep (`deliver_webhooks` every
PAYRECON_WEBHOOK_SWEEP_EVERY seconds) fans out every committed outbox row and attempts every due
delivery, so a notification whose enqueue was lost (Redis down) is delivered by the next sweep.
An enqueue (after a redelivery or a new endpoint) only makes it sooner.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from service.notify import deliveries
from service.settings import Settings

log = logging.getLogger(__name__)

DELIVER_JOB = "deliver_webhooks"
MAX_ROUNDS = 20  # claims per job run; the next sweep goes on


async def deliver_webhooks(ctx: dict[str, Any]) -> dict[str, int]:
    """Fan out and attempt what is due until nothing is (or MAX_ROUNDS claims)."""
    settings: Settings = ctx["settings"]
    pool = ctx["env"].pool  # the worker's pool (reconciler.run.RunEnv; service does not import it)
    http: httpx.AsyncClient = ctx["webhook_http"]
    attempts = 0
    for _ in range(MAX_ROUNDS):
        made = await deliveries.deliver_due(pool, http, scale=settings.webhook_retry_scale)
        attempts += made
        if not made:
            break
    return {"attempts": attempts}


def open_client(ctx: dict[str, Any]) -> None:
    """The HTTP client of the shop's endpoints (the worker's on_startup calls this: each job gets a copy of ctx)."""
    ctx["webhook_http"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=50))


async def close(ctx: dict[str, Any]) -> None:
    """Close the HTTP client (the worker's on_shutdown calls this)."""
    http: httpx.AsyncClient | None = ctx.pop("webhook_http", None)
    if http is not None:
        await http.aclose()


async def enqueue(redis: Any) -> None:
    """Ask a worker to deliver now; losing this (Redis down) only delays delivery to the next sweep."""
    try:
        await redis.enqueue_job(DELIVER_JOB)
    except Exception as exc:  # the sweep delivers anyway
        log.warning("could not enqueue %s (the next sweep delivers): %s", DELIVER_JOB, exc)
