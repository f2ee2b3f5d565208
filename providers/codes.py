"""One shape for a gateway's code tables: what a code means, as data.

Gateways answer with codes (MoMo's resultCode, VNPay's vnp_ResponseCode and querydr codes,
Stripe's event types). Each gateway's `wire.py` writes its tables as `dict[code, Code]`, with
the gateway's own wording as comments, and its adapter and status client read them the same
way: `outcome` says what kind of answer it is, `status` what it says of the payment.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from providers.base import PaymentStatus


class CodeOutcome(StrEnum):
    """What a code is about."""

    PAYMENT = "payment"  # the payment's state: `status` says which
    NOT_FOUND = "not_found"  # the gateway does not know the payment
    RETRY = "retry"  # the gateway is busy or in maintenance: ask again, within the retry budget
    REJECT = "reject"  # the gateway refused our request as made: fix it, do not repeat it as is
    IGNORE = "ignore"  # not news about the payment (a refund request's result, a refund in progress)


class Code(msgspec.Struct, frozen=True):
    outcome: CodeOutcome
    status: PaymentStatus | None = None  # for PAYMENT codes
    text: str = ""  # the gateway's wording, paraphrased: goes into PaymentEvent.reason
    # A condition ops must look at whatever the ledger does with the status: becomes an anomaly.
    # A short tag (`fraud_review`, `reversal`, `unknown_error`) so ops can group them.
    flag: str | None = None
    final: bool = True  # the gateway says no later state follows (MoMo's "Final Status" column)


def unlisted(code: object) -> str:
    """The flag of a code no table lists: the order is left unchanged and ops ask the gateway."""
    return f"unlisted_code:{code}"
