"""The arq worker: a run per `PAYRECON_RECONCILE_EVERY` slot, an audit per `PAYRECON_RECONCILE_AUDIT_EVERY` slot.

It also runs the jobs the API enqueues.

Jobs are plain async functions: `reconcile_slot` (cron: open orders and open anomalies),
`audit_slot` (cron: every order created inside the horizon, paid ones too, so refunds MoMo and
VNPay announce by no webhook, and paid orders the gateway does not confirm, are found),
`reconcile_now` (a run created by the API, enqueued by the name `service.jobs.RECONCILE_JOB`) and
`join_run` (help check a run's candidates). arq's cron `unique` job id is not trusted alone to
make one run per slot: the run row is keyed by (trigger, slot), so a second worker on the same
slot joins that run as a helper, and an audit slot and a 5-minute slot on one instant are two runs.

`payrecon worker` builds the worker from Settings; `arq reconciler.worker.WorkerSettings` works
too when PAYRECON_DATABASE_URL and PAYRECON_REDIS_URL are set, but only `payrecon worker` waits
out a Redis outage (arq's own CLI builds a plain Worker, which exits on one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from arq import cron, func
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Worker

from providers.gateway import Connected
from reconciler import candidates
from reconciler.http import http_client
from reconciler.limits import Limits
from reconciler.resilience import ResilientWorker
from reconciler.run import RunEnv, ask, count_due, execute
from reconciler.verdict import judge
from reconciler.watchdog import Watchdog
from service import db, metrics, runs
from service.gateways import load_gateways
from service.jobs import CHECK_ORDER_JOB, JOB_DECODE, JOB_ENCODE, RECONCILE_JOB
from service.model import Source
from service.notify import jobs as webhook_jobs
from service.ops import audit
from service.runs import ReconcileRun, RunParams, RunStatus, Trigger
from service.settings import Settings

log = logging.getLogger(__name__)

RUN_TIMEOUT = 3600  # seconds a run job may take before arq cancels it
ABANDONED_AFTER = 3600.0  # a run still `running` this long with no live lease has lost its workers
EVERY = "PAYRECON_RECONCILE_EVERY"
AUDIT_EVERY = "PAYRECON_RECONCILE_AUDIT_EVERY"


def cron_schedule(every: float, setting: str = EVERY) -> tuple[float, dict[str, Any]]:
    """arq cron fields firing every `every` seconds, and the period actually used.

    Cron fields can only express periods that divide a minute, an hour or a day; another value
    runs at the nearest one that does (a warning naming `setting` says so); a day at most.
    """
    periods = [float(s) for s in range(1, 61) if 60 % s == 0]
    periods += [60.0 * m for m in range(2, 61) if 60 % m == 0]
    periods += [3600.0 * h for h in range(2, 25) if 24 % h == 0]
    period = min(periods, key=lambda p: (abs(p - every), p))
    if period != every:
        log.warning("%s=%g is not a cron period; running every %gs", setting, every, period)
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
    gateways: dict[str, Connected] | None = ctx.get("gateways")
    if gateways is None:
        gateways = load_gateways(settings.gateways)
    http: httpx.AsyncClient | None = ctx.get("http")
    ctx["own_http"] = http is None
    if http is None:
        http = http_client(gateways)
    env = ctx["env"] = RunEnv(pool=pool, gateways=gateways, http=http, settings=settings)
    webhook_jobs.open_client(ctx)
    if ctx.get("watch", True):
        watchdog = ctx["watchdog"] = Watchdog(env, max_runs=settings.worker_concurrency)
        ctx["watching"] = asyncio.create_task(watchdog.run(), name="run watchdog")


async def shutdown(ctx: dict[str, Any]) -> None:
    await webhook_jobs.close(ctx)
    env: RunEnv | None = ctx.get("env")
    if env is None:
        return
    watching: asyncio.Task[None] | None = ctx.get("watching")
    if watching is not None:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await ctx["watchdog"].stop()
    if ctx.get("own_http"):
        await env.http.aclose()
    await env.pool.close()


def _summary(run: ReconcileRun | None, role: str) -> dict[str, Any]:
    if run is None:
        return {"role": role}
    return {"role": role, "run_id": run.id, "status": run.status.value, "counts": run.counts}


async def reconcile_slot(ctx: dict[str, Any]) -> dict[str, Any]:
    """The cron job: start this slot's run over open orders, or help the run another worker started for it."""
    env: RunEnv = ctx["env"]
    return await _take_part(ctx, Trigger.CRON, cron_schedule(env.settings.reconcile_every)[0], lambda _: RunParams())


def audit_params(slot: datetime, settings: Settings) -> RunParams:
    """An audit is a `since` sweep over the horizon, counted from its slot (every worker computes the same)."""
    return RunParams(since=slot - timedelta(seconds=settings.reconcile_horizon))


async def audit_slot(ctx: dict[str, Any]) -> dict[str, Any]:
    """The audit cron job: this slot's sweep of every order inside the horizon, whatever its status."""
    settings: Settings = ctx["env"].settings
    if not settings.reconcile_audit_every:
        return {"role": "none", "error": f"audits are off ({AUDIT_EVERY}=0)"}  # a job queued before a restart
    period, _ = cron_schedule(settings.reconcile_audit_every, AUDIT_EVERY)
    return await _take_part(ctx, Trigger.AUDIT, period, lambda slot: audit_params(slot, settings))


async def _take_part(
    ctx: dict[str, Any], trigger: Trigger, period: float, params: Callable[[datetime], RunParams]
) -> dict[str, Any]:
    """Lead the `trigger` run of this job's slot, or help the one another worker created first."""
    env: RunEnv = ctx["env"]
    slot = slot_of(ctx.get("score") or datetime.now(UTC).timestamp() * 1000, period)
    async with env.pool.acquire() as conn:
        reaped = await runs.fail_abandoned(conn, ABANDONED_AFTER)
        if reaped:
            log.warning("runs %s had no worker left: marked failed", reaped)
        run = await runs.create_run(conn, trigger=trigger, params=params(slot), slot=slot)
        lead = run is not None
        if run is None:
            run = await runs.run_of_slot(conn, slot, trigger)
    if run is None or run.status is not RunStatus.RUNNING:
        return {"role": "none", "slot": slot.isoformat()}
    log.info("%s slot %s: %s run %s", trigger.value, slot.isoformat(), "leading" if lead else "helping", run.id)
    if lead and trigger is Trigger.CRON:
        metrics.CANDIDATES_DUE.set(await count_due(env, run))
    ended = await execute(env, run, lead=lead)
    return _summary(ended if lead else run, "lead" if lead else "helper")


def cron_jobs(settings: Settings) -> list[CronJob]:
    """The scheduled jobs: a run every RECONCILE_EVERY, an audit every RECONCILE_AUDIT_EVERY (0: no audits)."""
    jobs = [cron(reconcile_slot, timeout=RUN_TIMEOUT, **cron_schedule(settings.reconcile_every)[1])]
    if settings.reconcile_audit_every:
        period, fields = cron_schedule(settings.reconcile_audit_every, AUDIT_EVERY)
        # An audit asks about every order of the horizon within each account's query rate (10/s by
        # default: 36k orders an hour): it may take until the next one is due, not just an hour.
        jobs.append(cron(audit_slot, timeout=max(RUN_TIMEOUT, period), **fields))
    # Outbound webhooks: the sweep delivers every committed notification even if no enqueue reached Redis.
    _, fields = cron_schedule(settings.webhook_sweep_every, "PAYRECON_WEBHOOK_SWEEP_EVERY")
    jobs.append(cron(webhook_jobs.deliver_webhooks, timeout=600, **fields))
    return jobs


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


async def check_order_now(ctx: dict[str, Any], action_id: int, order_id: str) -> dict[str, Any]:
    """The ops console's "check this order now": ask the order's gateways, apply the answers as `operator`.

    The same asking and applying as a run's (`reconciler.run.ask`), outside any run; the verdict
    goes into the console's operator_actions row, which the order page shows.
    """
    env: RunEnv = ctx["env"]
    result: dict[str, Any]
    try:
        async with env.pool.acquire() as conn:
            found = await candidates.load(conn, [order_id])
        if not found:
            result = {"error": f"no order {order_id}"}
        else:
            order = found[0]
            limits = Limits(env.gateways)
            answers, _ = await ask(env, order, env.gateways, limits, source=Source.OPERATOR, dry_run=False)
            async with env.pool.acquire() as conn:
                now = await candidates.order_status(conn, order.id) or order.status
            verdict = judge(
                provider=order.provider,
                account=order.account,
                ledger_before=order.status,
                ledger_now=now,
                answers=answers,
                dry_run=False,
            )
            result = {
                "kind": verdict.kind.value,
                "from_status": order.status,
                "to_status": now,
                "gateway_status": verdict.gateway_status,
                "detail": verdict.detail,
                "answers": [
                    {
                        "gateway": f"{a.provider}/{a.account}",
                        "reference": a.reference,
                        "status": None if a.event is None else str(a.event.status),
                        "outcome": None if a.outcome is None else str(a.outcome.kind),
                        "error": a.error,
                    }
                    for a in answers
                ],
            }
    except Exception as exc:  # the operator must see that it failed, not a check waiting forever
        log.exception("check of order %s (operator action %s) failed", order_id, action_id)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    async with env.pool.acquire() as conn:
        await audit.finish(conn, action_id, result)
    return result


def worker_options(
    settings: Settings,
    *,
    gateways: dict[str, Connected] | None = None,
    http: httpx.AsyncClient | None = None,
    schedule: bool = True,
) -> dict[str, Any]:
    """The keyword arguments of `arq.worker.Worker` for these settings (the whole worker configuration)."""
    assert settings.redis_url is not None, "resolve the embedded servers first (service.embedded.resolved)"
    ctx: dict[str, Any] = {"settings": settings, "gateways": gateways, "http": http}
    return {
        "functions": [
            func(reconcile_now, name=RECONCILE_JOB, timeout=RUN_TIMEOUT, max_tries=1),
            func(join_run, timeout=RUN_TIMEOUT, max_tries=1),
            func(webhook_jobs.deliver_webhooks, name=webhook_jobs.DELIVER_JOB, timeout=600, max_tries=1),
            func(check_order_now, name=CHECK_ORDER_JOB, timeout=300, max_tries=1),
        ],
        "cron_jobs": cron_jobs(settings) if schedule else [],
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
    """A worker for these settings; `options` override arq's (burst, poll_delay, handle_signals…).

    It waits out a Redis outage instead of exiting (reconciler.resilience).
    """
    own = {k: options.pop(k) for k in ("gateways", "http", "schedule") if k in options}
    merged = {**worker_options(settings, **own), **options}
    # A burst worker (tests, `payrecon worker --burst`) does its queue and exits: no watchdog, which
    # would start runs it then abandons on exit.
    merged["ctx"]["watch"] = not merged.get("burst", False)
    return ResilientWorker(**merged)


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
