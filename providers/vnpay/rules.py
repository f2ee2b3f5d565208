"""Which PaymentStatus a VNPay answer means: the rules that combine the code tables of wire.py.

VNPay reports a payment with two codes (vnp_ResponseCode, vnp_TransactionStatus) and, in
querydr answers, a transaction type; a single table cannot say it, these few rules do.
"""

from __future__ import annotations

import msgspec

from providers.base import PaymentStatus
from providers.vnpay.wire import (
    FULL_REFUND,
    PARTIAL_REFUND,
    PAYMENT,
    RESPONSE_CODES,
    TRANSACTION_STATUSES,
)

P = PaymentStatus


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    status: PaymentStatus
    reason: str
    flag: str | None = None
    refunded_amount: int | None = None
    amount: int | None = None  # set when the answer's vnp_Amount is not the payment's amount


def _ts_text(ts: str) -> str:
    code = TRANSACTION_STATUSES.get(ts)
    return f"transaction status {ts} {code.text}" if code else f"unlisted transaction status {ts}"


def ipn_verdict(response_code: str, transaction_status: str) -> Verdict:
    """An IPN's two codes → status. Success needs 00 in both (§8 pitfall 3)."""
    rc, ts = response_code, transaction_status
    rc_code = RESPONSE_CODES.get(rc)
    reason = f"vnpay:{rc}" + (f" {rc_code.text}" if rc_code and rc_code.text else "" if rc_code else " unlisted code")
    if ts not in ("00", "02"):  # the usual companions of success and failure say nothing new
        reason += f"; {_ts_text(ts)}"
    ts_code = TRANSACTION_STATUSES.get(ts)
    if ts == "04":  # the bank debited the customer but VNPay did not complete: money must flow back
        return Verdict(status=P.FAILED, reason=reason, flag="reversal")
    if rc == "07" or ts == "07":  # money taken, held for fraud review in the merchant portal
        return Verdict(status=P.PROCESSING, reason=reason, flag="fraud_review")
    if rc == "00":
        if ts_code is None:
            return Verdict(status=P.PENDING, reason=reason, flag=f"unlisted_transaction_status:{ts}")
        if ts_code.status is None:  # refund states: a refund (even a refused one) proves the payment
            return Verdict(status=P.SUCCEEDED, reason=reason, flag=ts_code.flag)
        return Verdict(status=ts_code.status, reason=reason, flag=ts_code.flag)
    if rc_code is None:
        return Verdict(status=P.FAILED, reason=reason, flag=f"unlisted_code:{rc}")
    return Verdict(status=rc_code.status or P.FAILED, reason=reason, flag=rc_code.flag)


def querydr_verdict(transaction_type: str, transaction_status: str, vnp_amount: int, order_amount: int) -> Verdict:
    """A querydr answer (ResponseCode 00) → status; amounts in VND (already ÷ 100).

    Refunds (type 02/03, status 00): what vnp_Amount holds then is unconfirmed (reference §4).
    Our rule: a full refund (02) returned the whole payment, so refunded = vnp_Amount either
    way. For a partial refund (03) we read vnp_Amount as the refund VNPay reports — the
    meaning it has in the refund API — which is a lower bound of the cumulative refunded sum
    (querydr shows one transaction), and we flag it for ops to check the refund records. A
    lower bound is safe: the ledger only moves a refund forward when the sum grows. If it is
    not below the payment, it cannot be a partial refund's sum: succeeded + flag.
    """
    tt, ts = transaction_type, transaction_status
    reason = f"vnpay:querydr 00/{tt}/{ts}"
    ts_code = TRANSACTION_STATUSES.get(ts)
    if tt == PAYMENT:
        if ts_code is None:
            return Verdict(status=P.PENDING, reason=reason, flag=f"unlisted_transaction_status:{ts}")
        if ts_code.status is None:
            return Verdict(status=P.SUCCEEDED, reason=reason, flag=ts_code.flag)
        return Verdict(status=ts_code.status, reason=reason, flag=ts_code.flag)
    if tt not in (FULL_REFUND, PARTIAL_REFUND):
        return Verdict(status=P.PENDING, reason=reason, flag=f"unlisted_transaction_type:{tt}")
    if ts != "00":  # refund in progress (05, 06), rejected (09) or odd: the payment itself succeeded
        flag = ts_code.flag if ts_code is not None and ts_code.status is None else f"refund_transaction_status:{ts}"
        if ts in ("05", "06"):
            flag = None
        return Verdict(status=P.SUCCEEDED, reason=reason, flag=flag, amount=order_amount)
    if tt == FULL_REFUND:
        return Verdict(status=P.REFUNDED, reason=reason, refunded_amount=vnp_amount, amount=vnp_amount)
    if vnp_amount < order_amount:
        return Verdict(
            status=P.PARTIALLY_REFUNDED,
            reason=reason,
            refunded_amount=vnp_amount,
            amount=order_amount,
            flag="partial_refund_sum_unconfirmed: querydr shows one refund; check the refund records",
        )
    return Verdict(
        status=P.SUCCEEDED,
        reason=reason,
        amount=order_amount,
        flag=f"partial_refund_amount_unknown: querydr vnp_Amount {vnp_amount} is not below the payment",
    )
