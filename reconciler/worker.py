"""The arq worker: a cron job per `PAYRECON_RECONCILE_EVERY` slot and the run jobs the API enqueues.

Jobs are plain async functions: `reconcile_slot` (cron), `reconcile_now` (a run created by the
API, enqueued by the name `service.jobs.RECONCILE_JOB`) and `join_run` (help check a run's
candidates). arq's cron `unique` job id is not trusted alone to make one run per slot: the run
row is keyed by its slot, so a second worker on the same slot joins that run as a helper.

`payrecon worker` builds the worker from Settings; `arq reconciler.worker.WorkerSettings` works
too when PAYRECON_DATABASE_URL and PAYRECON_REDIS_URL are set.
"""

from __future__ import annotations

import logging
import math
import warnings
from datetime import UTC, datetime
from typing import Any

import httpx
from arq import cron, func
from arq.connections import RedisSettings
from arq.worker import Worker

from providers.base import GatewayAdapter
from reconciler.run import RunEnv, execute
from service import db, runs
from service.gateways import load_gateways
from service.jobs import JOB_DECODE, JOB_ENCODE, RECONCILE_JOB
from service.runs import ReconcileRun, RunParams, RunStatus, Trigger
from service.settings import Settings

log = logging.getLogger(__name__)

RUN_TIMEOUT = 3600  # seconds a run job may take before arq cancels it
ABANDONED_AFTER = 3600.0  # a run still `running` this long with no live lease has lost its workers


def cron_schedule(every: float) -> tuple[float, dict[str, Any]]:
    """arq cron fields firing every `every` seconds, and the period actually used.

    Cron fields can only express periods that divide a minute, an hour or a day; another value
    runs at the nearest one that does (a warning says so).
    """
    periods = [float(s) for s in range(1, 61) if 60 % s == 0]
    periods += [60.0 * m for m in range(2, 61) if 60 % m == 0]
    periods += [3600.0 * h for h in range(2, 25) if 24 % h == 0]
    period = min(periods, key=lambda p: (abs(p - every), p))
    if period != every:
        log.warning("PAYRECON_RECONCILE_EVERY=%g is not a cron period; running every %gs", every, period)
    if period <= 60:
        return period, {"second": set(range(0, 60, int(period)))}
    if period <= 3600:
        return period, {"minute": set(range(0, 60, int(period // 60))), "second": 0}
    return period, {"hour": set(range(0, 24, int(period // 3600))), "minute": 0, "second": 0}


def slot_of(score_ms: float, period: float) -> datetime:
    """The slot a cron job belongs to: its scheduled time rounded down to the period."""
    return datetime.fromtimestamp(math.floor(score_ms / 1000 / period) * period, UTC)


async def startup(ctx: dict[str, Any]) -> None:
    """Build the pool, the adapters and one HTTP client, unless the caller passed them in ctx."""
    settings: Settings = ctx["settings"]
    assert settings.database_url is not None
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=settings.db_pool_max)
    gateways: dict[str, GatewayAdapter] | None = ctx.get("gateways")
    if gateways is None:
        gateways = load_gateways(settings.gateways)
    http: httpx.AsyncClient | None = ctx.get("http")
    ctx["own_http"] = http is None
    if http is None:
        # Per-account limits are the reconciler's; the client only needs room for all of them.
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0), limits=httpx.Limits(max_connections=100))
    ctx["env"] = RunEnv(pool=pool, gateways=gateways, http=http, settings=settings)


async def shutdown(ctx: dict[str, Any]) -> None:
    env: RunEnv | None = ctx.get("env")
    if env is None:
        return
    if ctx.get("own_http"):
        await env.http.aclose()
    await env.pool.close()


def _summary(run: ReconcileRun | None, role: str) -> dict[str, Any]:
    if run is None:
        return {"role": role}
    return {"role": role, "run_id": run.id, "status": run.status.value, "counts": run.counts}


async def reconcile_slot(ctx: dict[str, Any]) -> dict[str, Any]:
    """The cron job: start this slot's run, or help the run another worker started for it."""
    env: RunEnv = ctx["env"]
    period, _ = cron_schedule(env.settings.reconcile_every)
    slot = slot_of(ctx.get("score") or datetime.now(UTC).timestamp() * 1000, period)
    async with env.pool.acquire() as conn:
        reaped = await runs.fail_abandoned(conn, ABANDONED_AFTER)
        if reaped:
            log.warning("runs %s had no worker left: marked failed", reaped)
        run = await runs.create_run(conn, trigger=Trigger.CRON, params=RunParams(), slot=slot)
        lead = run is not None
        if run is None:
            run = await runs.run_of_slot(conn, slot)
    if run is None or run.status is not RunStatus.RUNNING:
        return {"role": "none", "slot": slot.isoformat()}
    log.info("slot %s: %s run %s", slot.isoformat(), "leading" if lead else "helping", run.id)
    ended = await execute(env, run, lead=lead)
    return _summary(ended if lead else run, "lead" if lead else "helper")


async def reconcile_now(ctx: dict[str, Any], run_id: int) -> dict[str, Any]:
    """Lead a run created elsewhere (the API's POST /v1/reconciliation/runs)."""
    env: RunEnv = ctx["env"]
    async with env.pool.acquire() as conn:
        run = await runs.get_run(conn, run_id)
    if run is None:
        return {"role": "none", "error": f"no run {run_id}"}
    return _summary(await execute(env, run, lead=True), "lead")


async def join_run(ctx: dict[str, Any], run_id: int) -> dict[str, Any]:
    """Help check the candidates of a running run (the lead ends it)."""
    env: RunEnv = ctx["env"]
    async with env.pool.acquire() as conn:
        run = await runs.get_run(conn, run_id)
    if run is None:
        return {"role": "none", "error": f"no run {run_id}"}
    await execute(env, run, lead=False)
    return {"role": "helper", "run_id": run_id}


def worker_options(
    settings: Settings,
    *,
    gateways: dict[str, GatewayAdapter] | None = None,
    http: httpx.AsyncClient | None = None,
    schedule: bool = True,
) -> dict[str, Any]:
    """The keyword arguments of `arq.worker.Worker` for these settings (the whole worker configuration)."""
    assert settings.redis_url is not None, "resolve the embedded servers first (service.embedded.resolved)"
    _, fields = cron_schedule(settings.reconcile_every)
    ctx: dict[str, Any] = {"settings": settings, "gateways": gateways, "http": http}
    return {
        "functions": [
            func(reconcile_now, name=RECONCILE_JOB, timeout=RUN_TIMEOUT, max_tries=1),
            func(join_run, timeout=RUN_TIMEOUT, max_tries=1),
        ],
        "cron_jobs": [cron(reconcile_slot, timeout=RUN_TIMEOUT, **fields)] if schedule else [],
        "queue_name": settings.queue_name,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "job_serializer": JOB_ENCODE,
        "job_deserializer": JOB_DECODE,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": ctx,
        "max_jobs": settings.worker_concurrency,
        "health_check_interval": 30,
        "job_completion_wait": 30,
    }


def create_worker(settings: Settings, **options: Any) -> Worker:
    """A worker for these settings; `options` override arq's (burst, poll_delay, handle_signals…)."""
    own = {k: options.pop(k) for k in ("gateways", "http", "schedule") if k in options}
    return Worker(**{**worker_options(settings, **own), **options})


async def close_worker(worker: Worker) -> None:
    """`Worker.close()` without its warning: arq 0.28 calls redis' deprecated `close()` (redis ≥ 5.0.1)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Call to deprecated close", category=DeprecationWarning)
        await worker.close()


def __getattr__(name: str) -> Any:
    # `arq reconciler.worker.WorkerSettings`: built on first use, so importing this module reads no env.
    if name == "WorkerSettings":
        from service.settings import load_settings

        return type("WorkerSettings", (), worker_options(load_settings()))
    raise AttributeError(name)
