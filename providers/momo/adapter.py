"""The MoMo adapter: IPN verification and parsing, the 204 acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import msgspec

from providers.acceptance import AmountLimits, OrderRules
from providers.answers import dedupe_key
from providers.base import Ack, OutcomeKind, PaymentEvent, PaymentStatus, WebhookRequest, index_accounts
from providers.codes import CodeOutcome, unlisted
from providers.errors import MalformedError, SignatureError, UnknownAccountError
from providers.momo import signing
from providers.momo.account import Account as MomoAccount
from providers.momo.wire import RESULT_CODES, Ipn

NAME = "momo"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REJECTIONS: tuple[tuple[type[Exception], str], ...] = (  # most specific first
    (SignatureError, "invalid_signature"),
    (UnknownAccountError, "unknown_partner"),
    (MalformedError, "malformed"),
)


# MoMo takes VND only; its create API bounds one payment to 1,000–50,000,000 VND (e-wallet; ATM starts
# at 10,000 and card ends at 10,000,000, but the order does not say which method the customer picks).
ORDER_RULES = OrderRules(
    currencies=frozenset({"VND"}),
    limits={"VND": AmountLimits(1_000, 50_000_000)},
)


class Adapter:
    """MoMo (AIO v2): JSON IPNs signed with HMAC-SHA256, acknowledged with 204; `/v2/gateway/api/query`."""

    name: ClassVar[str] = NAME

    def __init__(self, accounts: Sequence[MomoAccount]) -> None:
        self.accounts = index_accounts(NAME, accounts)
        self.by_partner = index_accounts(NAME, accounts, by="partner_code")

    # --- IPN ---------------------------------------------------------------------------

    def _decode(self, request: WebhookRequest) -> tuple[Ipn, MomoAccount, dict[str, Any]]:
        # Decode the whole body first (a typed decode skips unknown fields without checking
        # their UTF-8), then type it: ints must be JSON integers, never floats (§8.2).
        try:
            payload = msgspec.json.decode(request.body)
            ipn = msgspec.convert(payload, Ipn)
        except (msgspec.MsgspecError, ValueError, RecursionError) as exc:  # ValueError: invalid UTF-8
            raise MalformedError(
                f"momo IPN: expected a JSON object with MoMo's IPN fields and integer numbers: {exc}"
            ) from None
        return ipn, self._account_for(ipn.partnerCode, request.account), payload

    def _account_for(self, partner_code: str, url_account: str | None) -> MomoAccount:
        if url_account is not None:
            account = self.accounts.get(url_account)
            if account is None:
                raise UnknownAccountError(
                    f"momo IPN arrived on /webhooks/momo/{url_account}, but no [[momo]] account is named "
                    f"{url_account!r} (known: {sorted(self.accounts)})"
                )
            if account.partner_code != partner_code:
                raise UnknownAccountError(
                    f"momo IPN for partnerCode {partner_code!r} arrived on the URL of account {url_account!r}, "
                    f"whose partner_code is {account.partner_code!r}"
                )
            return account
        account = self.by_partner.get(partner_code)
        if account is None:
            raise UnknownAccountError(
                f"momo IPN for partnerCode {partner_code!r}, which no [[momo]] account in PAYRECON_GATEWAYS holds"
            )
        return account

    def verify(self, request: WebhookRequest) -> None:
        ipn, account, _payload = self._decode(request)
        message = signing.raw_string(
            signing.IPN_FIELDS, {**msgspec.structs.asdict(ipn), "accessKey": account.access_key}
        )
        if not any(signing.matches(secret, message, ipn.signature) for secret in account.secret_keys):
            raise SignatureError(
                f"momo IPN signature matched none of {len(account.secret_keys)} secret key(s) of account "
                f"{account.account!r} (partnerCode {account.partner_code}); are PAYRECON_GATEWAYS' momo "
                "access_key and secret_keys current, and was the body changed on the way?"
            )

    def parse(self, request: WebhookRequest) -> list[PaymentEvent]:
        ipn, account, payload = self._decode(request)
        meaning = RESULT_CODES.get(ipn.resultCode)
        if meaning is not None and meaning.outcome is not CodeOutcome.PAYMENT:
            # Refund results and request errors answer API calls; they say nothing new about a payment.
            return []
        if ipn.amount < 0:
            raise MalformedError(f"momo IPN: amount must be a non-negative number of VND, got {ipn.amount}")
        try:
            occurred_at = EPOCH + timedelta(milliseconds=ipn.responseTime)
        except OverflowError:
            raise MalformedError(f"momo IPN: responseTime {ipn.responseTime} is not epoch milliseconds") from None
        flag: str | None
        if meaning is None:
            state, flag = PaymentStatus.PENDING, unlisted(ipn.resultCode)
        else:
            state, flag = meaning.status or PaymentStatus.PENDING, meaning.flag
        return [
            PaymentEvent(
                provider=NAME,
                dedupe_key=ipn_dedupe_key(ipn, account.account),
                account=account.account,
                reference=ipn.orderId,
                status=state,
                amount=ipn.amount,
                currency="VND",
                provider_payment_id=str(ipn.transId) if ipn.transId else None,
                occurred_at=occurred_at,
                reason=f"momo:{ipn.resultCode} {ipn.message}",
                flag=flag,
                payload=payload,
            )
        ]

    # --- answers to MoMo -----------------------------------------------------------------

    def acknowledge(self, outcomes: Sequence[OutcomeKind]) -> Ack:
        # Every outcome (even duplicate, unknown_order, amount_mismatch) is durably recorded by
        # now, so MoMo is told to stop: 204 with no body is what the current docs ask (§5).
        return Ack(204)

    def reject(self, error: Exception) -> Ack:
        # Only the kind of failure goes back: the details (account names) are for our logs.
        kind = "rejected"
        for cls, name in REJECTIONS:
            if isinstance(error, cls):
                kind = name
                break
        return Ack(400, msgspec.json.encode({"error": kind}), "application/json")

    def retry_later(self) -> Ack:
        return Ack(503, b'{"error":"retry_later"}', "application/json")


def ipn_dedupe_key(ipn: Ipn, account: str) -> str:
    """`momo:<account>:<transId>:<resultCode>`; MoMo sends no event id (§3).

    A transId of 0 (no MoMo transaction, e.g. an expired QR) would make every such IPN of
    every order one "duplicate", so then the key names the partner and order instead.
    """
    if ipn.transId:
        return dedupe_key(NAME, account, ipn.transId, ipn.resultCode)
    return dedupe_key(NAME, account, ipn.partnerCode, ipn.orderId, ipn.resultCode)
