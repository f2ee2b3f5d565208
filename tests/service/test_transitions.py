"""The transition rules (DESIGN.md §3 table), cell by cell, plus the decisions the table leaves open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.base import OutcomeKind, PaymentStatus
from service.transitions import Facts, News, Payment, decide

S = PaymentStatus
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
AMOUNT = 100

ORDER_STATES = {
    S.PENDING: Facts(amount=AMOUNT, currency="VND"),
    S.PROCESSING: Facts(amount=AMOUNT, currency="VND", status=S.PROCESSING, status_at=T0),
    S.AUTHORIZED: Facts(amount=AMOUNT, currency="VND", status=S.AUTHORIZED, status_at=T0),
    S.FAILED: Facts(amount=AMOUNT, currency="VND", status=S.FAILED, status_at=T0),
    S.CANCELED: Facts(amount=AMOUNT, currency="VND", status=S.CANCELED, status_at=T0),
    S.SUCCEEDED: Facts(
        amount=AMOUNT, currency="VND", status=S.SUCCEEDED, status_at=T0, provider_payment_id="pay1", paid_at=T0
    ),
    S.PARTIALLY_REFUNDED: Facts(
        amount=AMOUNT,
        currency="VND",
        status=S.PARTIALLY_REFUNDED,
        status_at=T0,
        refunded_amount=30,
        provider_payment_id="pay1",
        paid_at=T0,
    ),
    S.REFUNDED: Facts(
        amount=AMOUNT,
        currency="VND",
        status=S.REFUNDED,
        status_at=T0,
        refunded_amount=AMOUNT,
        provider_payment_id="pay1",
        paid_at=T0,
    ),
}
EVENT_REFUND = {S.PARTIALLY_REFUNDED: 60, S.REFUNDED: AMOUNT}
COLUMNS = list(S)  # event statuses, in PaymentStatus order

# One row per order status, one cell per event status (newer news, same payment, right amount):
# "ignored", "stale", or the status the order moves to plus the anomalies it records.
TABLE: dict[PaymentStatus, list[str]] = {
    #           pending    processing    authorized    succeeded                   failed    canceled
    #           partially_refunded                          refunded
    S.PENDING: [
        "ignored", "processing", "authorized", "succeeded", "failed", "canceled",
        "partially_refunded missed_success", "refunded missed_success",
    ],
    S.PROCESSING: [
        "ignored", "processing", "authorized", "succeeded", "failed", "canceled",
        "partially_refunded missed_success", "refunded missed_success",
    ],
    S.AUTHORIZED: [
        "ignored", "processing", "authorized", "succeeded", "failed", "canceled",
        "partially_refunded missed_success", "refunded missed_success",
    ],
    S.FAILED: [
        "ignored", "processing", "authorized", "succeeded", "failed", "canceled",
        "partially_refunded missed_success", "refunded missed_success",
    ],
    S.CANCELED: [
        "ignored", "stale", "stale", "succeeded late_success", "stale", "stale",
        "partially_refunded late_success", "refunded late_success",
    ],
    S.SUCCEEDED: ["ignored", "stale", "stale", "stale", "stale", "stale", "partially_refunded", "refunded"],
    S.PARTIALLY_REFUNDED: ["ignored", "stale", "stale", "stale", "stale", "stale", "partially_refunded", "refunded"],
    S.REFUNDED: ["ignored", "stale", "stale", "stale", "stale", "stale", "stale", "stale"],
}  # fmt: skip


def news(status: PaymentStatus, at: datetime = T0 + timedelta(seconds=1), **fields: object) -> News:
    values: dict[str, object] = {"amount": AMOUNT, "currency": "VND", "provider_payment_id": "pay1"}
    if status in EVENT_REFUND:
        values["refunded_amount"] = EVENT_REFUND[status]
    values.update(fields)
    return News(status=status, at=at, **values)  # type: ignore[arg-type]


def test_the_table_covers_every_cell() -> None:
    assert COLUMNS == [
        S.PENDING, S.PROCESSING, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELED, S.PARTIALLY_REFUNDED, S.REFUNDED
    ]  # fmt: skip
    assert set(TABLE) == set(S)
    assert all(len(row) == len(COLUMNS) for row in TABLE.values())


@pytest.mark.parametrize(("order_status", "event_status"), [(o, e) for o in S for e in S], ids=lambda s: str(s))
def test_cell(order_status: PaymentStatus, event_status: PaymentStatus) -> None:
    order = ORDER_STATES[order_status]
    expected = TABLE[order_status][COLUMNS.index(event_status)].split()
    decision = decide(order, news(event_status))
    if expected == ["ignored"]:
        assert decision.kind is OutcomeKind.IGNORED
        assert decision.after == order
    elif expected == ["stale"]:
        assert decision.kind is OutcomeKind.STALE
        assert decision.after == order
    else:
        assert decision.kind is OutcomeKind.APPLIED
        assert decision.after.status == S(expected[0])
        assert decision.after.status_at == T0 + timedelta(seconds=1)
    assert [a.kind for a in decision.anomalies] == expected[1:]


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize(("amount", "currency"), [(AMOUNT - 1, "VND"), (AMOUNT + 1, "VND"), (AMOUNT, "USD")])
def test_wrong_amount_or_currency_never_moves_the_order(status: PaymentStatus, amount: int, currency: str) -> None:
    for order in ORDER_STATES.values():
        decision = decide(order, news(status, amount=amount, currency=currency))
        assert decision.kind is OutcomeKind.AMOUNT_MISMATCH
        assert decision.after == order
        assert [a.kind for a in decision.anomalies] == ["amount_mismatch"]
        detail = decision.anomalies[0].detail
        assert detail["got"] == {"amount": amount, "currency": currency}
        assert detail["money_moved"] == status.is_paid


RETRY = [S.PROCESSING, S.AUTHORIZED, S.FAILED]


@pytest.mark.parametrize("current", RETRY)
@pytest.mark.parametrize("incoming", RETRY)
def test_retry_cycle_older_news_is_stale(current: PaymentStatus, incoming: PaymentStatus) -> None:
    decision = decide(ORDER_STATES[current], news(incoming, at=T0 - timedelta(microseconds=1)))
    assert decision.kind is OutcomeKind.STALE


@pytest.mark.parametrize("current", RETRY)
@pytest.mark.parametrize("incoming", RETRY)
def test_retry_cycle_same_instant_failed_beats_authorized_beats_processing(
    current: PaymentStatus, incoming: PaymentStatus
) -> None:
    decision = decide(ORDER_STATES[current], news(incoming, at=T0))
    if RETRY.index(incoming) > RETRY.index(current):
        assert decision.kind is OutcomeKind.APPLIED
        assert decision.after.status is incoming
    else:
        assert decision.kind is OutcomeKind.STALE


def test_retry_cycle_newer_news_of_the_same_status_refreshes_its_time() -> None:
    # Without it an older `failed` could later overtake the newer `processing`.
    later = T0 + timedelta(minutes=5)
    decision = decide(ORDER_STATES[S.PROCESSING], news(S.PROCESSING, at=later))
    assert decision.kind is OutcomeKind.APPLIED
    assert decision.after.status_at == later
    assert decide(decision.after, news(S.FAILED, at=T0 + timedelta(minutes=1))).kind is OutcomeKind.STALE


@pytest.mark.parametrize("status", [S.CANCELED, S.SUCCEEDED])
def test_higher_layers_apply_whatever_their_time(status: PaymentStatus) -> None:
    decision = decide(ORDER_STATES[S.FAILED], news(status, at=T0 - timedelta(days=1)))
    assert decision.kind is OutcomeKind.APPLIED


def test_success_records_the_payment_and_its_time() -> None:
    at = T0 + timedelta(seconds=3)
    after = decide(ORDER_STATES[S.PROCESSING], news(S.SUCCEEDED, at=at, provider_payment_id="pi_9")).after
    assert (after.provider_payment_id, after.paid_at) == ("pi_9", at)


def test_unpaid_news_does_not_record_a_payment_id() -> None:
    after = decide(ORDER_STATES[S.PENDING], news(S.PROCESSING, provider_payment_id="pi_1")).after
    assert after.provider_payment_id is None
    assert after.paid_at is None


@pytest.mark.parametrize("status", [S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED])
def test_second_success_of_another_payment_is_a_double_payment(status: PaymentStatus) -> None:
    order = ORDER_STATES[status]
    decision = decide(order, news(S.SUCCEEDED, provider_payment_id="pay2"))
    assert decision.kind is OutcomeKind.ANOMALY
    assert decision.after == order
    assert [(a.kind, a.detail["paid_by"], a.detail["provider_payment_id"]) for a in decision.anomalies] == [
        ("double_payment", "pay1", "pay2")
    ]


def test_success_without_a_payment_id_is_no_double_payment() -> None:
    assert decide(ORDER_STATES[S.SUCCEEDED], news(S.SUCCEEDED, provider_payment_id=None)).kind is OutcomeKind.STALE


def test_refund_status_follows_the_cumulative_amount() -> None:
    succeeded = ORDER_STATES[S.SUCCEEDED]
    full = decide(succeeded, news(S.PARTIALLY_REFUNDED, refunded_amount=AMOUNT)).after
    assert (full.status, full.refunded_amount) == (S.REFUNDED, AMOUNT)
    part = decide(succeeded, news(S.REFUNDED, refunded_amount=40)).after
    assert (part.status, part.refunded_amount) == (S.PARTIALLY_REFUNDED, 40)


def test_refund_must_grow_inside_layer_four() -> None:
    partial = ORDER_STATES[S.PARTIALLY_REFUNDED]  # 30 refunded
    assert decide(partial, news(S.PARTIALLY_REFUNDED, refunded_amount=30)).kind is OutcomeKind.STALE
    assert decide(partial, news(S.PARTIALLY_REFUNDED, refunded_amount=20)).kind is OutcomeKind.STALE
    grown = decide(partial, news(S.PARTIALLY_REFUNDED, refunded_amount=31))
    assert (grown.kind, grown.after.refunded_amount) == (OutcomeKind.APPLIED, 31)


def test_refund_without_an_amount() -> None:
    succeeded = ORDER_STATES[S.SUCCEEDED]
    full = decide(succeeded, news(S.REFUNDED, refunded_amount=None)).after
    assert (full.status, full.refunded_amount) == (S.REFUNDED, AMOUNT)
    unsized = decide(succeeded, news(S.PARTIALLY_REFUNDED, refunded_amount=None)).after
    assert (unsized.status, unsized.refunded_amount) == (S.PARTIALLY_REFUNDED, 0)
    partial = ORDER_STATES[S.PARTIALLY_REFUNDED]
    assert decide(partial, news(S.PARTIALLY_REFUNDED, refunded_amount=None)).kind is OutcomeKind.STALE


def test_refund_larger_than_the_payment_is_capped_and_an_anomaly() -> None:
    decision = decide(ORDER_STATES[S.SUCCEEDED], news(S.REFUNDED, refunded_amount=AMOUNT + 50))
    assert decision.kind is OutcomeKind.APPLIED
    assert (decision.after.status, decision.after.refunded_amount) == (S.REFUNDED, AMOUNT)
    assert [(a.kind, a.detail["refunded_amount"]) for a in decision.anomalies] == [
        ("refund_exceeds_payment", AMOUNT + 50)
    ]
    again = decide(decision.after, news(S.REFUNDED, refunded_amount=AMOUNT + 70))
    assert again.kind is OutcomeKind.ANOMALY  # nothing left to move, but ops must see it
    assert again.after == decision.after


statuses = st.sampled_from(list(S))
times = st.integers(min_value=-5, max_value=5).map(lambda s: T0 + timedelta(seconds=s))
refunds = st.one_of(st.none(), st.integers(min_value=0, max_value=2 * AMOUNT))


@given(
    start=st.sampled_from(list(ORDER_STATES.values())),
    status=statuses,
    at=times,
    refunded=refunds,
    amount=st.sampled_from([AMOUNT, AMOUNT + 1]),
)
def test_never_backwards(start: Facts, status: PaymentStatus, at: datetime, refunded: int | None, amount: int) -> None:
    decision = decide(start, news(status, at=at, refunded_amount=refunded, amount=amount))
    after = decision.after
    assert (decision.kind is OutcomeKind.APPLIED) == (after != start)
    assert after.status.layer >= start.status.layer
    assert start.refunded_amount <= after.refunded_amount <= after.amount
    if decision.kind is OutcomeKind.APPLIED and after.status.layer == start.status.layer == 1:
        assert after.status_at is not None
        assert start.status_at is not None
        assert after.status_at >= start.status_at


# --- payments (issue 10): refunds per payment, the paying payment by gateway time ---------------

PAID_BY_A = Facts(
    amount=AMOUNT,
    currency="VND",
    status=S.SUCCEEDED,
    status_at=T0,
    provider_payment_id="A",
    paid_at=T0,
    paying=Payment(status=S.SUCCEEDED, status_at=T0, paid_at=T0),
)
LATER = T0 + timedelta(hours=1)


def of(payment: str, status: PaymentStatus, at: datetime = LATER, refunded: int | None = None) -> News:
    return News(
        status=status, at=at, amount=AMOUNT, currency="VND", refunded_amount=refunded, provider_payment_id=payment
    )


def test_another_payments_success_is_a_double_payment_and_is_recorded_against_it() -> None:
    decision = decide(PAID_BY_A, of("B", S.SUCCEEDED))
    assert decision.kind is OutcomeKind.ANOMALY
    assert [a.kind for a in decision.anomalies] == ["double_payment"]
    assert decision.payment == Payment(status=S.SUCCEEDED, status_at=LATER, paid_at=LATER)
    assert not decision.resolves_double_payment


def test_refunding_the_duplicate_in_full_settles_it_and_leaves_the_order() -> None:
    duplicate = Payment(status=S.SUCCEEDED, status_at=LATER, paid_at=LATER)
    order = msgspec.structs.replace(PAID_BY_A, payment=duplicate)
    decision = decide(order, of("B", S.REFUNDED, LATER + timedelta(hours=1), AMOUNT))
    assert (decision.kind, decision.anomalies, decision.resolves_double_payment) == (OutcomeKind.STALE, (), True)
    assert decision.after == order
    assert decision.payment is not None
    assert (decision.payment.status, decision.payment.refunded_amount) == (S.REFUNDED, AMOUNT)
    partial = decide(order, of("B", S.PARTIALLY_REFUNDED, LATER + timedelta(hours=1), 10))
    assert not partial.resolves_double_payment  # the duplicate still holds money


def test_refund_of_a_payment_never_seen_moves_nothing_and_is_an_anomaly() -> None:
    decision = decide(PAID_BY_A, of("C", S.PARTIALLY_REFUNDED, refunded=40))
    assert decision.kind is OutcomeKind.ANOMALY
    assert [a.kind for a in decision.anomalies] == ["refund_of_unknown_payment"]
    assert decision.after == PAID_BY_A
    assert decision.payment is not None
    assert decision.payment.refunded_amount == 40


def test_refunds_of_the_paying_payment_still_move_the_order_whatever_the_others() -> None:
    other_refunded = Payment(status=S.PARTIALLY_REFUNDED, refunded_amount=90, paid_at=T0)
    order = msgspec.structs.replace(PAID_BY_A, payment=None)
    decision = decide(order, of("A", S.PARTIALLY_REFUNDED, refunded=30))
    assert (decision.kind, decision.after.status, decision.after.refunded_amount) == (
        OutcomeKind.APPLIED,
        S.PARTIALLY_REFUNDED,
        30,
    )
    assert other_refunded.refunded_amount == 90  # never added: the order's refund is A's alone


def test_an_earlier_capture_heard_late_becomes_the_paying_payment() -> None:
    refunded_b = Facts(
        amount=AMOUNT,
        currency="VND",
        status=S.REFUNDED,
        status_at=LATER,
        refunded_amount=AMOUNT,
        provider_payment_id="B",
        paid_at=LATER,
        paying=Payment(status=S.REFUNDED, status_at=LATER, refunded_amount=AMOUNT, paid_at=LATER),
    )
    decision = decide(refunded_b, of("A", S.SUCCEEDED, T0))
    assert decision.kind is OutcomeKind.APPLIED
    after = decision.after
    assert (after.status, after.refunded_amount, after.provider_payment_id, after.paid_at) == (S.SUCCEEDED, 0, "A", T0)
    assert decision.anomalies == ()  # B, now the duplicate, is already refunded in full
    assert decision.resolves_double_payment
