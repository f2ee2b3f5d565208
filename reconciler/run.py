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
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import Any

import asyncpg
import httpx
from msgspec.structs import replace

from providers.base import StatusQuery
from providers.gateway import Connected
from reconciler import candidates
from reconciler.catch_up import catch_up_all
from reconciler.findings import Checked, Findings, Progress
from reconciler.limits import CircuitOpenError, Limits
from reconciler.participants import BEATS_PER_PERIOD, Participant, release_gone
from reconciler.verdict import Answer
from service import breakers, ledger, logs, metrics, runs
from service.db import UNAVAILABLE_ERRORS
from service.model import Source
from service.runs import FindingKind, ReconcileRun, RunStatus
from service.settings import Settings

log = logging.getLogger(__name__)

LEASE_SECONDS = 600.0  # a claimed order is this run's until then, even if its worker dies


class RunEnv:
    """What runs in one process share: the pool, the adapters, one HTTP client, the settings."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        gateways: Mapping[str, Connected],
        http: httpx.AsyncClient,
        settings: Settings,
    ) -> None:
        self.pool = pool
        self.gateways = dict(gateways)
        self.http = http
        self.settings = settings
        # Runs this process leads / helps now: one part of each kind per run and process (a helper
        # of a run whose lead died may take the lead over beside its own helping).
        self.leading: set[int] = set()
        self.helping: set[int] = set()

    def gateways_for(self, run: ReconcileRun) -> dict[str, Connected]:
        wanted = run.params.provider
        return {n: a for n, a in self.gateways.items() if wanted is None or n == wanted}

    def rule(self, run: ReconcileRun, holder: str | None = None) -> candidates.ClaimRule:
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
            holder=holder,
        )


async def count_due(env: RunEnv, run: ReconcileRun) -> int:
    async with env.pool.acquire() as conn:
        return await candidates.count_due(conn, env.rule(run))


async def execute(
    env: RunEnv,
    run: ReconcileRun,
    *,
    lead: bool = True,
    progress: Progress | None = None,
    participant: Participant | None = None,
) -> ReconcileRun | None:
    """Take part in `run`; the lead returns the ended run, a helper None.

    A lead call leads only if nobody alive leads the run already; otherwise it helps. Every call
    is a participant with a heartbeat (reconciler.participants) for as long as it takes part.
    """
    if run.status is not RunStatus.RUNNING:
        return run
    if run.id in env.leading or (not lead and run.id in env.helping):
        return None  # this process takes that part already (its watchdog, or another job)
    me = participant or Participant(env.pool, run.id, env.settings.run_heartbeat)
    async with me.taking_part():
        if lead and not await me.claim_lead():
            log.info("run %s has a live lead; %s helps", run.id, me.id)
            lead = False
        parts = env.leading if lead else env.helping
        if run.id in parts:
            return None
        parts.add(run.id)
        try:
            return await _take_part(env, run, me, lead=lead, progress=progress)
        finally:
            parts.discard(run.id)


async def _take_part(
    env: RunEnv, run: ReconcileRun, me: Participant, *, lead: bool, progress: Progress | None
) -> ReconcileRun | None:
    started = time.monotonic()
    try:
        gateways = env.gateways_for(run)
        if run.params.provider is not None and not gateways:
            raise LookupError(f"gateway {run.params.provider!r} is not configured in PAYRECON_GATEWAYS")
        limits = Limits(gateways)
        rule = env.rule(run, holder=me.id)
        await candidates.prepare(env.pool, rule)
        stream = candidates.stream(env.pool, rule, prepared=True)
        try:
            checked = await _check_candidates(env, run, gateways, limits, progress, stream, me)
        finally:
            await _publish_breakers(env.pool, run, limits)
        log.info("run %s: checked %s orders (%s)", run.id, checked, "lead" if lead else "helper")
        if not lead:
            return None
        await _settle(env, run, gateways, limits, progress, rule, me)
        caught = await catch_up_all(env.pool, run, gateways, limits, env.http)
        return await _finish(env.pool, run, caught, limits, time.monotonic() - started, lead=me.id)
    except Exception as exc:
        if lead:
            await _abort(env.pool, run.id, run.trigger.value, exc, lead=me.id)
        raise


async def _check_candidates(
    env: RunEnv,
    run: ReconcileRun,
    gateways: Mapping[str, Connected],
    limits: Limits,
    progress: Progress | None,
    source: AsyncIterator[candidates.Candidate],
    me: Participant,
) -> int:
    # Enough orders in flight to keep every account's query slots busy, and no more: memory
    # holds a batch and the in-flight orders, whatever the number of candidates. An order holds
    # its place through its query and then its ledger apply (and, for one in a batch, the
    # findings' write): three places per slot keep a slot's next order waiting for it while the
    # database, on a busy server, takes as long as two queries.
    room = asyncio.Semaphore(limits.capacity() * 3)
    found = Findings(env.pool, run, holder=me.id, size=env.settings.reconcile_batch, progress=progress)
    checked = 0

    def done(_: asyncio.Task[None]) -> None:
        room.release()

    async with asyncio.TaskGroup() as group:
        async for candidate in source:
            await room.acquire()
            group.create_task(check_order(env, run, candidate, gateways, limits, found)).add_done_callback(done)
            checked += 1
            if me.expelled:  # declared gone: whatever it still holds is someone else's to check now
                break
    await found.flush()
    return checked


async def check_order(
    env: RunEnv,
    run: ReconcileRun,
    order: candidates.Candidate,
    gateways: Mapping[str, Connected],
    limits: Limits,
    found: Findings,
) -> None:
    """Ask every reference of the order at the run's gateways and apply each answer; `found` records the finding."""
    with logs.bound(gateway=order.provider, account=order.account, order_id=order.id):
        answers, not_asked = await ask(
            env, order, gateways, limits, source=Source.RECONCILER, dry_run=run.dry_run, run=run
        )
    await found.add(Checked(order, answers, not_asked))


async def ask(
    env: RunEnv,
    order: candidates.Candidate,
    gateways: Mapping[str, Connected],
    limits: Limits,
    *,
    source: Source,
    dry_run: bool,
    run: ReconcileRun | None = None,
) -> tuple[list[Answer], int]:
    """Ask every reference of the order at `gateways` and apply each answer through the ledger as `source`.

    Also returns how many references were not asked because their account's breaker was open.
    """
    answers: list[Answer] = []
    not_asked = 0  # references whose gateway's breaker was open: the order was not checked there
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
            timed = partial(_timed, ref.provider, ref.account, adapter.status.fetch_status, query, env.http)
            event = await limiter.call(timed)
        except Exception as exc:  # every gateway failure is a finding, never an order change
            not_asked += isinstance(exc, CircuitOpenError)
            answers.append(replace(asked, error=f"{ref.provider}/{ref.account}: {_describe(exc)}"))
            if run is not None and limiter.open and not was_open and not isinstance(exc, CircuitOpenError):
                await _publish_breakers(env.pool, run, limits, only_open=True)  # ops see it now, not at run end
            continue
        if event is None:
            answers.append(asked)
            continue
        try:
            outcome = await ledger.apply(env.pool, event, source, dry_run=dry_run)
        except UNAVAILABLE_ERRORS:
            raise  # the database is gone: the run cannot record anything, it fails
        except Exception as exc:
            log.exception("%s: the ledger could not apply %s", source, event.dedupe_key)
            answers.append(replace(asked, event=event, error=f"ledger: {_describe(exc)}"))
            continue
        answers.append(replace(asked, event=event, outcome=outcome))
    return answers, not_asked


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


async def _settle(
    env: RunEnv,
    run: ReconcileRun,
    gateways: Mapping[str, Connected],
    limits: Limits,
    progress: Progress | None,
    rule: candidates.ClaimRule,
    me: Participant,
) -> None:
    """The lead's last stretch: check what is left of the plan until no participant holds an order.

    Left over: orders whose participant is gone (their leases released on its missed heartbeat)
    and orders a walk passed while another run held them. Live helpers' leases are waited for; a
    lease held elsewhere past LEASE_SECONDS ends the wait (skipped). A walk of the plan reads all
    of it, so it is taken when something may be left: first, after a participant is found gone,
    and once no participant of the run holds an order.
    """
    deadline = time.monotonic() + LEASE_SECONDS
    walk = True
    while time.monotonic() < deadline and not me.expelled:
        async with env.pool.acquire() as conn:
            walk = await release_gone(conn, run.id) > 0 or walk
        more = 0
        if walk:
            rest = candidates.stream(env.pool, rule, prepared=True)  # the plan walked again: what is left
            more = await _check_candidates(env, run, gateways, limits, progress, rest, me)
        async with env.pool.acquire() as conn:
            held = await candidates.live_leases(conn, run.id)
        if walk and held == 0 and more == 0:
            return
        walk = more > 0 or held == 0
        if not walk:
            await asyncio.sleep(min(0.2, env.settings.run_heartbeat / BEATS_PER_PERIOD))


async def _finish(
    pool: asyncpg.Pool,
    run: ReconcileRun,
    caught: dict[str, dict[str, Any]],
    limits: Limits,
    seconds: float,
    *,
    lead: str,
) -> ReconcileRun | None:
    async with pool.acquire() as conn:
        planned, _ = await runs.record_skipped(conn, run.id)
        rows = await runs.finding_counts(conn, run.id)
        kinds: dict[str, int] = {}
        per_gateway: dict[str, dict[str, int]] = {}
        for provider, kind, n in rows:
            kinds[kind] = kinds.get(kind, 0) + n
            per_gateway.setdefault(provider, {})[kind] = n
        skipped = kinds.get(FindingKind.SKIPPED.value, 0)
        total = sum(kinds.values()) - skipped
        errors = kinds.get(FindingKind.ERROR.value, 0)
        failed_feeds = [key for key, c in caught.items() if c.get("error")]
        if total + skipped and errors == total and len(failed_feeds) == len(caught):
            status = RunStatus.FAILED  # every gateway this run needed failed: it learnt nothing
        elif errors or skipped or failed_feeds:
            status = RunStatus.PARTIAL  # `completed` means every candidate was checked and answered
        else:
            status = RunStatus.COMPLETED
        counts = {
            "checked": total,
            "planned": planned,
            "skipped": skipped,
            "findings": kinds,
            "gateways": per_gateway,
            "catch_up": caught,
            "circuit_open": sorted(limiter.name for limiter in limits.opened()),
            "seconds": round(seconds, 3),
        }
        ended = await runs.finish_run(conn, run.id, status, counts, lead=lead)
        if ended is not None:
            metrics.RUNS.labels(run.trigger.value, status.value).inc()
        else:
            log.warning("run %s: not ended by %s, which no longer leads it (taken over)", run.id, lead)
        return ended or await runs.get_run(conn, run.id)


async def _abort(pool: asyncpg.Pool, run_id: int, trigger: str, exc: BaseException, *, lead: str) -> None:
    try:
        async with pool.acquire() as conn:
            if await runs.finish_run(conn, run_id, RunStatus.FAILED, {}, error=_describe(exc)[:1000], lead=lead):
                metrics.RUNS.labels(trigger, RunStatus.FAILED.value).inc()
    except Exception:  # the database may be what failed: the run stays `running` until reaped
        log.warning("run %s: could not record its failure", run_id, exc_info=True)
