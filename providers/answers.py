"""The one dedupe-key format, and status-API answers turned into PaymentEvents.

A dedupe key says "this statement was already heard". Gateways number things per account
(VNPay's vnp_TxnRef is unique per terminal only, and every unpaid IPN carries
vnp_TransactionNo=0), so every key starts with the gateway and the account that spoke:
two terminals sharing TxnRef 1001 are two different payments, never duplicates.
migrations/0030_account_dedupe_keys.sql rewrote the keys stored before this format.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from providers.base import PaymentEvent, PaymentStatus, StatusQuery


def dedupe_key(provider: str, account: str, *parts: object) -> str:
    """`<provider>:<account>:<part>:…`; `parts` identify the statement within the account."""
    return ":".join((provider, account, *(str(part) for part in parts)))


def status_answer(
    provider: str,
    query: StatusQuery,
    *,
    status: PaymentStatus,
    amount: int,
    currency: str,
    asked_at: datetime,
    provider_payment_id: str | None = None,
    refunded_amount: int | None = None,
    order_id: str | None = None,
    reason: str | None = None,
    flag: str | None = None,
    payload: dict[str, Any] | None = None,
) -> PaymentEvent:
    """What a status API said about `query`'s payment, as of `asked_at`.

    The key is a function of the answered state: asking again and hearing the same is a
    duplicate; hearing a new state (or a larger refunded sum) is news.
    """
    return PaymentEvent(
        provider=provider,
        dedupe_key=dedupe_key(
            provider, query.account, "status", query.reference, status, provider_payment_id, refunded_amount or 0
        ),
        account=query.account,
        reference=query.reference,  # the ledger finds the order we asked about by what it registered
        order_id=order_id,
        status=status,
        amount=amount,
        currency=currency,
        provider_payment_id=provider_payment_id,
        refunded_amount=refunded_amount,
        occurred_at=asked_at,  # an answer is news as of when we asked
        reason=reason,
        flag=flag,
        payload=payload or {},
    )
