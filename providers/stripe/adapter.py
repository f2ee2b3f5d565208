"""The Stripe adapter: verify Stripe-Signature, parse Events, answer Stripe."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import ClassVar

import msgspec

from providers.acceptance import AmountLimits, OrderRules
from providers.base import (
    Ack,
    OutcomeKind,
    PaymentEvent,
    WebhookRequest,
    index_accounts,
    lookup_account,
)
from providers.errors import MalformedError, ReplayError, SignatureError, UnknownAccountError
from providers.stripe import signing
from providers.stripe.account import Account as StripeAccount
from providers.stripe.events import events_from_payload

DEFAULT_ACCOUNT = "default"  # /webhooks/stripe (no {account} in the URL) is this account
_JSON = "application/json"
_decode_json = msgspec.json.Decoder()
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (SignatureError, "signature"),
    (ReplayError, "replay"),
    (UnknownAccountError, "unknown_account"),
    (MalformedError, "malformed"),
)


# Stripe charges any of its ~135 currencies (any ISO 4217 code here); `amount` has at most eight digits
# (99999999), and its documented minimum charge per settlement currency (0.50 USD, 0.30 GBP, 50 JPY…).
_MINIMUM_CHARGE = {"USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500}
_MINIMUM_CHARGE |= {"DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50, "MXN": 1000}
_MINIMUM_CHARGE |= {"MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200, "SEK": 300, "SGD": 50, "THB": 1000}
ORDER_RULES = OrderRules(
    limits={currency: AmountLimits(minimum, 99_999_999) for currency, minimum in _MINIMUM_CHARGE.items()},
    default_limits=AmountLimits(1, 99_999_999),
)


class Adapter:
    """Stripe for payrecon (reference/stripe.md). Accounts are looked up by their name in the URL."""

    name: ClassVar[str] = "stripe"

    def __init__(self, accounts: Sequence[StripeAccount]) -> None:
        self.accounts = index_accounts(self.name, accounts)

    def account(self, name: str | None) -> StripeAccount:
        return lookup_account(self.name, self.accounts, DEFAULT_ACCOUNT if name is None else name)

    # --- webhooks ---------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        account = self.account(request.account)
        header = request.headers.get("stripe-signature")
        if not header:
            raise MalformedError("no Stripe-Signature header; expected 't=<unix seconds>,v1=<hex>'")
        received = request.received_at
        if received.tzinfo is None:
            received = received.replace(tzinfo=UTC)
        # `received_at` is the clock here: re-verifying a stored delivery later judges it as it arrived
        signing.verify_header(
            header,
            bytes(request.body),
            account.webhook_secrets,
            now=received.timestamp(),
            tolerance=account.tolerance_s,
        )

    def parse(self, request: WebhookRequest) -> list[PaymentEvent]:
        account = self.account(request.account)
        try:
            payload = _decode_json.decode(request.body)
        except (ValueError, RecursionError) as exc:  # DecodeError, and UnicodeDecodeError inside strings
            raise MalformedError(f"Stripe webhook body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MalformedError(f"Stripe webhook body is a JSON {type(payload).__name__}, expected an Event object")
        return events_from_payload(payload, account=account.account, order_key=account.order_id_metadata_key)

    def acknowledge(self, outcomes: Sequence[OutcomeKind]) -> Ack:
        # Stripe wants any 2xx, fast; every committed outcome (even ignored or mismatched) is final here.
        return Ack(200, b'{"received":true}', _JSON)

    def reject(self, error: Exception) -> Ack:
        # 400: Stripe retries it (harmlessly) and shows this body in the dashboard's delivery log.
        kind = next((name for cls, name in _REASONS if isinstance(error, cls)), "malformed")
        body = msgspec.json.encode({"error": {"reason": kind, "message": str(error)[:500]}})
        return Ack(400, body, _JSON)

    def retry_later(self) -> Ack:
        return Ack(503, b'{"error":{"reason":"unavailable","message":"try again later"}}', _JSON)
