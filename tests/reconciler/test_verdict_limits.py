"""The pure parts of a run: what answers mean (verdict) and how hard a gateway is pushed (limits)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from providers.base import OutcomeKind, PaymentEvent
from providers.errors import GatewayUnavailableError
from reconciler.limits import CircuitOpenError, GatewayLimiter
from reconciler.verdict import Answer, agrees, judge
from service.model import OrderState, Outcome
from service.runs import FindingKind
from tests.reconciler.stage import S


def event(status: S, amount: int = 1000) -> PaymentEvent:
    return PaymentEvent(
        provider="momo",
        dedupe_key=f"k-{status}",
        account="default",
        reference="r1",
        status=status,
        amount=amount,
        currency="VND",
        occurred_at=datetime.now(UTC),
    )


def state(status: S, version: int = 1, refunded: int = 0) -> OrderState:
    return OrderState(status=status, refunded_amount=refunded, provider_payment_id=None, version=version)


def answer(status: S, kind: OutcomeKind, before: S | None = None, after: S | None = None, **more: object) -> Answer:
    outcome = Outcome(
        kind=kind,
        order_id="o1",
        event_id=7,
        before=state(before) if before else None,
        after=state(after, 2) if after else None,
        **more,  # type: ignore[arg-type]
    )
    return Answer(provider="momo", account="default", reference="r1", event=event(status), outcome=outcome)


def verdict(ledger_before: str, ledger_now: str, *answers: Answer, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return judge(
        provider="momo",
        account="default",
        ledger_before=ledger_before,
        ledger_now=ledger_now,
        answers=answers,
        dry_run=dry_run,
    )


def test_an_answer_that_moves_the_order_is_a_repair() -> None:
    v = verdict("pending", "succeeded", answer(S.SUCCEEDED, OutcomeKind.APPLIED, S.PENDING, S.SUCCEEDED))
    assert (v.kind, v.from_status, v.to_status, v.gateway_status) == (
        FindingKind.REPAIRED,
        "pending",
        "succeeded",
        "succeeded",
    )
    dry = verdict("pending", "pending", answer(S.SUCCEEDED, OutcomeKind.APPLIED, S.PENDING, S.SUCCEEDED), dry_run=True)
    assert dry.kind is FindingKind.REPAIRED
    assert (dry.detail or "").startswith("would repair")


def test_newer_news_of_the_same_status_is_in_sync_not_a_repair() -> None:
    v = verdict("processing", "processing", answer(S.PROCESSING, OutcomeKind.APPLIED, S.PROCESSING, S.PROCESSING))
    assert v.kind is FindingKind.IN_SYNC


def test_ledger_paid_and_gateway_not_is_a_flagged_mismatch() -> None:
    v = verdict("succeeded", "succeeded", answer(S.FAILED, OutcomeKind.STALE, S.SUCCEEDED, S.SUCCEEDED))
    assert v.kind is FindingKind.MISMATCH
    assert v.flag_mismatch
    # …unless another attempt's reference could not be asked: then nothing can be concluded.
    lost = Answer(provider="momo", account="default", reference="r2", error="momo/default: HTTP 503")
    unsure = verdict("succeeded", "succeeded", answer(S.FAILED, OutcomeKind.STALE), lost)
    assert unsure.kind is FindingKind.ERROR
    # …and another attempt that says paid explains the paid ledger.
    paid = verdict(
        "succeeded", "succeeded", answer(S.FAILED, OutcomeKind.STALE), answer(S.SUCCEEDED, OutcomeKind.STALE)
    )
    assert paid.kind is FindingKind.IN_SYNC


def test_refused_news_is_a_mismatch_and_the_rest_reads_as_it_says() -> None:
    wrong_amount = answer(S.SUCCEEDED, OutcomeKind.AMOUNT_MISMATCH, anomalies=["amount_mismatch"])
    v = verdict("pending", "pending", wrong_amount)
    assert v.kind is FindingKind.MISMATCH
    assert not v.flag_mismatch  # the ledger recorded its own anomaly
    assert "amount_mismatch" in (v.detail or "")
    assert verdict("pending", "pending", Answer(provider="momo", account="default", reference="r1")).kind is (
        FindingKind.MISSING_AT_GATEWAY
    )
    errored = verdict("pending", "pending", Answer(provider="momo", account="default", reference="r1", error="boom"))
    assert (errored.kind, errored.detail) == (FindingKind.ERROR, "boom")
    assert verdict("pending", "pending", answer(S.PENDING, OutcomeKind.IGNORED)).kind is FindingKind.IN_SYNC
    assert verdict("canceled", "canceled", answer(S.FAILED, OutcomeKind.STALE)).kind is FindingKind.IN_SYNC


def test_failed_and_canceled_agree_nothing_else_does() -> None:
    assert agrees("canceled", "failed")
    assert agrees("refunded", "refunded")
    assert not agrees("pending", "failed")
    assert not agrees("succeeded", "refunded")


async def test_the_breaker_opens_after_consecutive_failures_and_stops_asking() -> None:
    limiter = GatewayLimiter("momo/default", concurrency=2, rate=1000.0, threshold=3)
    asked = 0

    async def failing() -> None:
        nonlocal asked
        asked += 1
        raise GatewayUnavailableError("momo status API: HTTP 503 after 4 attempt(s)")

    async def fine() -> str:
        return "ok"

    for _ in range(2):
        with pytest.raises(GatewayUnavailableError):
            await limiter.call(failing)
    assert await limiter.call(fine) == "ok"  # a success resets the count
    for _ in range(3):
        with pytest.raises(GatewayUnavailableError):
            await limiter.call(failing)
    with pytest.raises(CircuitOpenError, match="HTTP 503"):
        await limiter.call(failing)
    assert asked == 5  # the open breaker did not ask
    assert limiter.open


async def test_concurrency_and_rate_limits_hold() -> None:
    limiter = GatewayLimiter("stripe/default", concurrency=2, rate=50.0)
    running = peak = 0

    async def query() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    started = time.monotonic()
    await asyncio.gather(*(limiter.call(query) for _ in range(6)))
    assert peak == 2
    assert time.monotonic() - started >= 5 / 50.0  # six starts, 1/50 s apart


async def test_retry_after_pauses_the_account() -> None:
    limiter = GatewayLimiter("momo/default", concurrency=1, rate=1000.0)

    async def throttled() -> None:
        raise GatewayUnavailableError("HTTP 429", retry_after=0.2)

    async def fine() -> None:
        return None

    with pytest.raises(GatewayUnavailableError):
        await limiter.call(throttled)
    started = time.monotonic()
    await limiter.call(fine)
    assert time.monotonic() - started >= 0.15


async def test_queries_already_waiting_for_their_turn_honour_a_retry_after_and_an_opened_breaker() -> None:
    # Three slots, 10/s: the second and third queries wait their turn (0.1 s, 0.2 s) when the first
    # is told to keep quiet; neither may go out before the pause ends.
    limiter = GatewayLimiter("momo/default", concurrency=3, rate=10.0)
    started: list[float] = []

    async def throttled() -> None:
        started.append(time.monotonic())
        await asyncio.sleep(0.05)  # the others take their turns meanwhile
        raise GatewayUnavailableError("HTTP 429", retry_after=0.5)

    async def fine() -> None:
        started.append(time.monotonic())

    t0 = time.monotonic()
    await asyncio.gather(limiter.call(throttled), limiter.call(fine), limiter.call(fine), return_exceptions=True)
    assert all(at - t0 >= 0.5 for at in started[1:]), [round(at - t0, 3) for at in started]

    # The same with a breaker that opens on the first failure: the waiting queries are not sent.
    limiter = GatewayLimiter("momo/default", concurrency=3, rate=10.0, threshold=1)
    started.clear()

    async def down() -> None:
        started.append(time.monotonic())
        await asyncio.sleep(0.05)
        raise GatewayUnavailableError("HTTP 503")

    results = await asyncio.gather(*(limiter.call(down) for _ in range(3)), return_exceptions=True)
    assert len(started) == 1
    assert [type(r) for r in results] == [GatewayUnavailableError, CircuitOpenError, CircuitOpenError]
