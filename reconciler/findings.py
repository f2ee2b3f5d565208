"""Recording what a run found: checked orders judged, their findings written and leases ended a batch at a time.

A check ends in the database: the order's finding, a mismatch anomaly for ops, the end of its
lease. Written one order at a time that was a transaction of five round trips and a commit per
check, the largest share of a check's database work after the ledger's own. `Findings` gathers
the checks of one participant and writes each batch in one transaction: its orders' statuses
read in one statement, their findings inserted in one, their leases ended in one.

A batch is written when it is full (the run's claim batch), when its oldest check has waited
`MAX_WAIT` seconds (a slow gateway must not hold findings and leases back for long), and when the
participant stops checking. Until then the orders stay leased to the participant: nobody else
checks them, and a participant that dies with a batch unwritten has its leases released on its
missed heartbeat, so those orders are checked again (the ledger's dedupe keys make the answers'
second apply a duplicate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import asyncpg
import msgspec
from msgspec.structs import replace

from reconciler import candidates
from reconciler.verdict import MISMATCH_ANOMALY, Answer, Verdict, judge
from service import ledger, metrics, runs
from service.db import transaction
from service.runs import FindingKind, ReconcileRun

log = logging.getLogger(__name__)

MAX_WAIT = 1.0  # seconds a checked order may wait for its batch to be written
Progress = Callable[[FindingKind, str], None]  # told of each finding once it is recorded


class Checked(msgspec.Struct, frozen=True):
    """One order's check, before judging: what each reference's gateway said and what the ledger did."""

    order: candidates.Candidate
    answers: list[Answer]
    not_asked: int  # references not asked: their account's breaker was open


def verdict_of(run: ReconcileRun, checked: Checked, ledger_now: str) -> Verdict:
    """The finding for a checked order, the order's status now being `ledger_now`."""
    order, answers = checked.order, checked.answers
    verdict = judge(
        provider=order.provider,
        account=order.account,
        ledger_before=order.status,
        ledger_now=ledger_now,
        answers=answers,
        dry_run=run.dry_run,
    )
    if answers and checked.not_asked == len(answers):  # no gateway was asked at all: not checked, not an error
        verdict = replace(verdict, kind=FindingKind.SKIPPED, gateway_status=None)
    return verdict


async def write(
    pool: asyncpg.Pool, run: ReconcileRun, batch: Sequence[Checked], *, holder: str | None
) -> list[Verdict]:
    """Judge a batch of checked orders and record it in one transaction: findings, anomalies, leases ended."""
    async with transaction(pool) as conn:
        now = await candidates.order_statuses(conn, [c.order.id for c in batch])
        verdicts = [verdict_of(run, c, now.get(c.order.id, c.order.status)) for c in batch]
        await runs.record_findings(
            conn,
            run.id,
            [
                runs.NewFinding(
                    order_id=c.order.id,
                    provider=v.provider,
                    account=v.account,
                    kind=v.kind,
                    from_status=v.from_status,
                    to_status=v.to_status,
                    gateway_status=v.gateway_status,
                    detail=v.detail,
                )
                for c, v in zip(batch, verdicts, strict=True)
            ],
        )
        for c, v in zip(batch, verdicts, strict=True):
            if v.flag_mismatch and not run.dry_run:
                # One anomaly per order (no event id): asking again and hearing the same must not pile up rows.
                said = [a.event.dedupe_key for a in c.answers if a.event is not None]
                await ledger.record_anomaly(
                    conn,
                    MISMATCH_ANOMALY,
                    order_id=c.order.id,
                    event_id=None,
                    detail={"ledger": v.to_status, "gateway": v.gateway_status, "run_id": run.id, "answers": said},
                )
        failed = (FindingKind.ERROR, FindingKind.SKIPPED)
        ended = [(c.order.id, v.kind in failed and not run.dry_run) for c, v in zip(batch, verdicts, strict=True)]
        await candidates.release(conn, run.id, ended, holder=holder)
    return verdicts


class Findings:
    """One participant's checked orders on their way to the database, written a batch at a time (see above)."""

    def __init__(
        self, pool: asyncpg.Pool, run: ReconcileRun, *, holder: str | None, size: int, progress: Progress | None
    ) -> None:
        self.pool = pool
        self.run = run
        self.holder = holder
        self.size = max(1, size)
        self.progress = progress
        self._pending: list[Checked] = []
        self._since = 0.0  # when the oldest pending check was added

    async def add(self, checked: Checked) -> None:
        """One more checked order; the batch is written if it is full or has waited long enough."""
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(checked)
        if len(self._pending) >= self.size or time.monotonic() - self._since >= MAX_WAIT:
            await self.flush()

    async def flush(self) -> None:
        """Write what is pending (the participant stops checking, or a batch is due)."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        verdicts = await write(self.pool, self.run, batch, holder=self.holder)
        for c, v in zip(batch, verdicts, strict=True):
            metrics.FINDINGS.labels(v.provider, v.kind.value).inc()
            if self.progress is not None:
                self.progress(v.kind, v.provider)
            log.debug("run %s: order %s %s", self.run.id, c.order.id, v.kind.value, extra={"outcome": v.kind.value})
