"""One reconciliation run: claim candidates, ask their gateways, apply the answers, record findings (DESIGN.md §6).

A run is a row in `reconcile_runs`. Whoever starts it is its *lead*: it checks candidates,
then (once helpers are done) runs the Stripe catch-up and ends the run. Any number of *helpers*
(other workers on the same cron slot, or `join_run` jobs) check candidates of the same run;
SKIP LOCKED leases split them so every candidate is checked once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import asyncpg
import httpx
from msgspec.structs import replace

from providers.base import GatewayAdapter, StatusQuery
from reconciler import candidates
from reconciler.catch_up import catch_up_all
from reconciler.limits import CircuitOpenError, Limits
from reconciler.verdict import MISMATCH_ANOMALY, Answer, Verdict, judge
from service import breakers, ledger, metrics, runs
from service.db import UNAVAILABLE_ERRORS, transaction
from service.model import Source
from service.runs import FindingKind, ReconcileRun, RunStatus
from service.settings import Settings

log = logging.getLogger(__name__)

LEASE_SECONDS = 600.0  # a claimed order is this run's until then, even if its worker dies
Progress = Callable[[FindingKind, str], None]


class RunEnv:
    """What runs in one process share: the pool, the adapters, one HTTP client, the settings."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        gateways: Mapping[str, GatewayAdapter],
        http: httpx.AsyncClient,
        settings: Settings,
    ) -> None:
        self.pool = pool
        self.gateways = dict(gateways)
        self.http = http
        self.settings = settings

    def gateways_for(self, run: ReconcileRun) -> dict[str, GatewayAdapter]:
        wanted = run.params.provider
        return {n: a for n, a in self.gateways.items() if wanted is None or n == wanted}

    def rule(self, run: ReconcileRun) -> candidates.ClaimRule:
        s = self.settings
        return candidates.ClaimRule(
            run_id=run.id,
            grace=s.reconcile_grace,
            horizon=s.reconcile_horizon,
            since=run.params.since,
            gateways=sorted(self.gateways_for(run)),
            batch=s.reconcile_batch,
            lease=LEASE_SECONDS,
            dry_run=run.dry_run,
        )


async def count_due(env: RunEnv, run: ReconcileRun) -> int:
    async with env.pool.acquire() as conn:
        return await candidates.count_due(conn, env.rule(run))


async def execute(
    env: RunEnv, run: ReconcileRun, *, lead: bool = True, progress: Progress | None = None
) -> ReconcileRun | None:
    """Take part in `run`; the lead returns the ended run, a helper None."""
    if run.status is not RunStatus.RUNNING:
        return run
    started = time.monotonic()
    try:
        gateways = env.gateways_for(run)
        if run.params.provider is not None and not gateways:
            raise LookupError(f"gateway {run.params.provider!r} is not configured in PAYRECON_GATEWAYS")
        limits = Limits(gateways)
        try:
            checked = await _check_candidates(env, run, gateways, limits, progress)
        finally:
            await _publish_breakers(env.pool, run, limits)
        log.info("run %s: checked %s orders (%s)", run.id, checked, "lead" if lead else "helper")
        if not lead:
            return None
        await _wait_for_helpers(env.pool, run.id)
        caught = await catch_up_all(env.pool, run, gateways, limits, env.http)
        return await _finish(env.pool, run, caught, limits, time.monotonic() - started)
    except Exception as exc:
        if lead:
            await _abort(env.pool, run.id, run.trigger.value, exc)
        raise


async def _check_candidates(
    env: RunEnv,
    run: ReconcileRun,
    gateways: Mapping[str, GatewayAdapter],
    limits: Limits,
    progress: Progress | None,
) -> int:
    # Enough orders in flight to keep every account's query slots busy, and no more: memory
    # holds a batch and the in-flight orders, whatever the number of candidates.
    room = asyncio.Semaphore(limits.capacity() * 2)
    checked = 0

    def done(_: asyncio.Task[Verdict]) -> None:
        room.release()

    async with asyncio.TaskGroup() as group:
        async for candidate in candidates.stream(env.pool, env.rule(run)):
            await room.acquire()
            group.create_task(check_order(env, run, candidate, gateways, limits, progress)).add_done_callback(done)
            checked += 1
    return checked


async def check_order(
    env: RunEnv,
    run: ReconcileRun,
    order: candidates.Candidate,
    gateways: Mapping[str, GatewayAdapter],
    limits: Limits,
    progress: Progress | None = None,
) -> Verdict:
    """Ask every reference of the order at the run's gateways, apply each answer, record one finding."""
    answers: list[Answer] = []
    for ref in order.references:
        adapter = gateways.get(ref.provider)
        if adapter is None:
            continue
        primary = (ref.provider, ref.account, ref.reference) == (order.provider, order.account, order.reference)
        query = StatusQuery(
            order_id=order.id,
            account=ref.account,
            reference=ref.reference,
            amount=order.amount,
            currency=order.currency,
            created_at=order.created_at,
            provider_payment_id=order.provider_payment_id if primary else None,
            provider_data=ref.provider_data,
        )
        asked = Answer(provider=ref.provider, account=ref.account, reference=ref.reference)
        limiter = limits.for_account(ref.provider, ref.account)
        was_open = limiter.open
        try:
            timed = partial(_timed, ref.provider, ref.account, adapter.fetch_status, query, env.http)
            event = await limiter.call(timed)
        except Exception as exc:  # every gateway failure is a finding, never an order change
            answers.append(replace(asked, error=f"{ref.provider}/{ref.account}: {_describe(exc)}"))
            if limiter.open and not was_open and not isinstance(exc, CircuitOpenError):
                await _publish_breakers(env.pool, run, limits, only_open=True)  # ops see it now, not at run end
            continue
        if event is None:
            answers.append(asked)
            continue
        try:
            outcome = await ledger.apply(env.pool, event, Source.RECONCILER, dry_run=run.dry_run)
        except UNAVAILABLE_ERRORS:
            raise  # the database is gone: the run cannot record anything, it fails
        except Exception as exc:
            log.exception("run %s: the ledger could not apply %s", run.id, event.dedupe_key)
            answers.append(replace(asked, event=event, error=f"ledger: {_describe(exc)}"))
            continue
        answers.append(replace(asked, event=event, outcome=outcome))

    async with transaction(env.pool) as conn:
        now = await candidates.order_status(conn, order.id) or order.status
        verdict = judge(
            provider=order.provider,
            account=order.account,
            ledger_before=order.status,
            ledger_now=now,
            answers=answers,
            dry_run=run.dry_run,
        )
        await runs.record_finding(
            conn,
            run.id,
            order_id=order.id,
            provider=verdict.provider,
            account=verdict.account,
            kind=verdict.kind,
            from_status=verdict.from_status,
            to_status=verdict.to_status,
            gateway_status=verdict.gateway_status,
            detail=verdict.detail,
        )
        if verdict.flag_mismatch and not run.dry_run:
            # One anomaly per order (no event id): asking again and hearing the same must not pile up rows.
            said = [a.event.dedupe_key for a in answers if a.event is not None]
            await ledger.record_anomaly(
                conn,
                MISMATCH_ANOMALY,
                order_id=order.id,
                event_id=None,
                detail={"ledger": now, "gateway": verdict.gateway_status, "run_id": run.id, "answers": said},
            )
        await candidates.release(conn, run.id, order.id, failed=verdict.kind is FindingKind.ERROR, dry_run=run.dry_run)
    metrics.FINDINGS.labels(verdict.provider, verdict.kind.value).inc()
    if progress is not None:
        progress(verdict.kind, verdict.provider)
    return verdict


async def _timed(provider: str, account: str, fetch: Callable[..., Any], *args: Any) -> Any:
    """One status query, its time and its failure counted per gateway account."""
    started = time.perf_counter()
    try:
        return await fetch(*args)
    except Exception as exc:
        metrics.GATEWAY_QUERY_ERRORS.labels(provider, account, type(exc).__name__).inc()
        raise
    finally:
        metrics.GATEWAY_QUERY_SECONDS.labels(provider, account).observe(time.perf_counter() - started)


async def _publish_breakers(pool: asyncpg.Pool, run: ReconcileRun, limits: Limits, *, only_open: bool = False) -> None:
    """Write the accounts' breaker states where `serve` reads them (service/breakers.py); best effort."""
    try:
        async with pool.acquire() as conn:
            for (provider, account), limiter in limits.items():
                if only_open and not limiter.open:
                    continue
                await breakers.publish(
                    conn,
                    provider,
                    account,
                    open=limiter.open,
                    failures=limiter.failures,
                    last_error=limiter.last_error,
                    run_id=run.id,
                )
    except Exception:  # the breaker's state is for ops' eyes: never fail a run over it
        log.warning("run %s: could not publish breaker states", run.id, exc_info=True)


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:  # a task group's failure: say what failed
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text or ":" in text else f"{type(exc).__name__}: {text}"


async def _wait_for_helpers(pool: asyncpg.Pool, run_id: int) -> None:
    """Wait until no helper holds an order of the run (their leases expire if they died)."""
    deadline = time.monotonic() + LEASE_SECONDS
    while time.monotonic() < deadline:
        async with pool.acquire() as conn:
            if await candidates.live_leases(conn, run_id) == 0:
                return
        await asyncio.sleep(0.2)


async def _finish(
    pool: asyncpg.Pool, run: ReconcileRun, caught: dict[str, dict[str, Any]], limits: Limits, seconds: float
) -> ReconcileRun | None:
    async with pool.acquire() as conn:
        rows = await runs.finding_counts(conn, run.id)
        kinds: dict[str, int] = {}
        per_gateway: dict[str, dict[str, int]] = {}
        for provider, kind, n in rows:
            kinds[kind] = kinds.get(kind, 0) + n
            per_gateway.setdefault(provider, {})[kind] = n
        total = sum(kinds.values())
        errors = kinds.get(FindingKind.ERROR.value, 0)
        failed_feeds = [key for key, c in caught.items() if c.get("error")]
        if total and errors == total and len(failed_feeds) == len(caught):
            status = RunStatus.FAILED  # every gateway this run needed failed: it learnt nothing
        elif errors or failed_feeds:
            status = RunStatus.PARTIAL
        else:
            status = RunStatus.COMPLETED
        counts = {
            "checked": total,
            "findings": kinds,
            "gateways": per_gateway,
            "catch_up": caught,
            "circuit_open": sorted(limiter.name for limiter in limits.opened()),
            "seconds": round(seconds, 3),
        }
        ended = await runs.finish_run(conn, run.id, status, counts)
        if ended is not None:
            metrics.RUNS.labels(run.trigger.value, status.value).inc()
        return ended or await runs.get_run(conn, run.id)


async def _abort(pool: asyncpg.Pool, run_id: int, trigger: str, exc: BaseException) -> None:
    try:
        async with pool.acquire() as conn:
            if await runs.finish_run(conn, run_id, RunStatus.FAILED, {}, error=_describe(exc)[:1000]):
                metrics.RUNS.labels(trigger, RunStatus.FAILED.value).inc()
    except Exception:  # the database may be what failed: the run stays `running` until reaped
        log.warning("run %s: could not record its failure", run_id, exc_info=True)
