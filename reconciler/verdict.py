"""What one order's status answers mean: the finding a run records for it (DESIGN.md §6 step 3).

A pure function over what the gateway said and what the ledger did with it, so every rule is
tested without a gateway. One order may hold several references (one per payment attempt); each
was asked, and the finding speaks for the order as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from providers.base import OutcomeKind, PaymentEvent, PaymentStatus
from service.model import AnomalyKind, Outcome
from service.runs import FindingKind

PAID = frozenset(s for s in PaymentStatus if s.is_paid)
NOT_PAID = frozenset({PaymentStatus.FAILED, PaymentStatus.CANCELED})
MISMATCH_ANOMALY = AnomalyKind.LEDGER_GATEWAY_MISMATCH


def agrees(ledger: str, gateway: str) -> bool:
    """Whether the ledger and a status answer tell the same story.

    `failed` and `canceled` agree: a status API may not tell them apart where its webhook did
    (VNPay's querydr says TransactionStatus 02 "failed" for an IPN's 24 "customer cancelled"),
    and the ledger rightly keeps the more precise, higher-layer `canceled`.
    """
    return ledger == gateway or {ledger, gateway} <= NOT_PAID


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One reference asked: the gateway's event and the ledger's outcome, or None (unknown there), or an error."""

    provider: str
    account: str
    reference: str
    event: PaymentEvent | None = None
    outcome: Outcome | None = None
    error: str | None = None


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    kind: FindingKind
    provider: str
    account: str
    from_status: str | None
    to_status: str | None
    gateway_status: str | None
    detail: str | None
    flag_mismatch: bool = False  # record a ledger_gateway_mismatch anomaly for ops


def judge(
    *, provider: str, account: str, ledger_before: str, ledger_now: str, answers: Sequence[Answer], dry_run: bool
) -> Verdict:
    """The finding for an order, from its answers in the order they were asked.

    - repaired: an answer moved the order forward (the same `apply` as a webhook).
    - mismatch: the ledger would not accept what the gateway says (wrong amount, a second payment:
      the ledger recorded an anomaly), or the ledger says paid and every answer says not paid.
      Never reversed automatically: ops decide.
    - error: a reference could not be asked (and nothing was learnt elsewhere to act on).
    - missing_at_gateway: no gateway knows any reference of the order.
    - in_sync: otherwise (duplicate, stale, ignored news: the ledger already knew or knows better).
    """
    applied = [a for a in answers if moved(a.outcome)]
    if applied:
        first, last = applied[0].outcome, applied[-1].outcome
        assert first is not None
        assert last is not None
        before = first.before.status.value if first.before else ledger_before
        after = last.after.status.value if last.after else ledger_now
        said = applied[-1].event.status.value if applied[-1].event else None
        verb = "would repair" if dry_run else "repaired"
        extra = sorted({k for a in applied if a.outcome for k in a.outcome.anomalies})
        detail = f"{verb} from the status API" + (f"; anomaly: {', '.join(extra)}" if extra else "")
        return _verdict(FindingKind.REPAIRED, applied[-1], before, after, said, detail)

    flagged = [a for a in answers if a.outcome is not None and a.outcome.kind in _REFUSED]
    if flagged:
        a = flagged[0]
        assert a.outcome is not None
        assert a.event is not None
        kinds = ", ".join(a.outcome.anomalies) or a.outcome.kind.value
        detail = f"ledger refused the gateway's {a.event.status.value} ({kinds}): {_money(a.event)}"
        return _verdict(FindingKind.MISMATCH, a, ledger_before, ledger_now, a.event.status.value, detail)

    errors = [a for a in answers if a.error is not None or _lost(a)]
    heard = [a for a in answers if a.event is not None and not _lost(a)]
    said = ", ".join(dict.fromkeys(a.event.status.value for a in heard if a.event)) or None
    if ledger_now in PAID and heard and not errors and not any(a.event and a.event.status in PAID for a in heard):
        a = heard[0]
        detail = f"ledger says {ledger_now}, gateway says {said}: flagged for ops, not reversed"
        return _verdict(FindingKind.MISMATCH, a, ledger_before, ledger_now, said, detail, flag=True)
    if errors:
        a = errors[0]
        messages = "; ".join(a.error or f"{a.reference}: the ledger found no order for it" for a in errors)
        return _verdict(FindingKind.ERROR, a, ledger_before, ledger_now, said, messages)
    if not heard:
        refs = ", ".join(f"{a.provider}/{a.account}/{a.reference}" for a in answers) or "none"
        return Verdict(
            kind=FindingKind.MISSING_AT_GATEWAY,
            provider=answers[0].provider if answers else provider,
            account=answers[0].account if answers else account,
            from_status=ledger_before,
            to_status=ledger_now,
            gateway_status=None,
            detail=f"no gateway knows the order's references ({refs})",
        )
    a = heard[-1]
    note = None if said == ledger_now else f"gateway says {said}; the ledger keeps {ledger_now} (not forward news)"
    return _verdict(FindingKind.IN_SYNC, a, ledger_before, ledger_now, said, note)


_REFUSED = frozenset({OutcomeKind.AMOUNT_MISMATCH, OutcomeKind.ANOMALY})


def moved(outcome: Outcome | None) -> bool:
    """Applied *and* the order's status or refunded amount changed.

    In the retry cycle the ledger also applies newer news of the same status (it only refreshes
    the time that orders layer-1 news): that is the ledger agreeing, not a repair.
    """
    if outcome is None or outcome.kind is not OutcomeKind.APPLIED:
        return False
    if outcome.before is None or outcome.after is None:
        return True
    b, a = outcome.before, outcome.after
    return (b.status, b.refunded_amount) != (a.status, a.refunded_amount)


def _lost(answer: Answer) -> bool:
    # The ledger could not match the answer to the order it was asked for (a registration race).
    return answer.outcome is not None and answer.outcome.kind is OutcomeKind.UNKNOWN_ORDER


def _money(event: PaymentEvent) -> str:
    refunded = f", refunded {event.refunded_amount}" if event.refunded_amount else ""
    return f"{event.amount} {event.currency}{refunded}"


def _verdict(
    kind: FindingKind,
    answer: Answer,
    before: str,
    after: str,
    said: str | None,
    detail: str | None,
    *,
    flag: bool = False,
) -> Verdict:
    return Verdict(
        kind=kind,
        provider=answer.provider,
        account=answer.account,
        from_status=before,
        to_status=after,
        gateway_status=said,
        detail=detail,
        flag_mismatch=flag,
    )
