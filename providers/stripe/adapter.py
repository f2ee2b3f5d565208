"""The Stripe adapter: verify Stripe-Signature, parse Events, answer Stripe, ask its API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC
from typing import ClassVar

import httpx
import msgspec

from providers.acceptance import AmountLimits, OrderRules
from providers.base import (
    Ack,
    Clock,
    GatewayAccount,
    OutcomeKind,
    PaymentEvent,
    StatusQuery,
    WebhookRequest,
    index_accounts,
    utcnow,
)
from providers.errors import MalformedError, ReplayError, SignatureError, UnknownAccountError
from providers.http import DEFAULT_POLICY, RetryPolicy, Sleep
from providers.stripe import signing, status
from providers.stripe.config import Account as StripeAccount  # in Adapter, `Account` is the ClassVar
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
    order_rules: ClassVar[OrderRules] = ORDER_RULES  # checked when an order is registered
    Account: ClassVar[type[GatewayAccount]] = StripeAccount  # GatewayAdapter's type: protocol ClassVars are invariant

    def __init__(
        self,
        accounts: Sequence[StripeAccount],
        *,
        clock: Clock = utcnow,
        retry: RetryPolicy = DEFAULT_POLICY,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.accounts = index_accounts(self.name, accounts)
        self.clock = clock
        self.retry = retry
        self.sleep = sleep

    def account(self, name: str | None) -> StripeAccount:
        name = DEFAULT_ACCOUNT if name is None else name
        found = self.accounts.get(name)
        if found is None:
            # the held names are not listed: this message goes back to whoever called the URL
            raise UnknownAccountError(f"no [[stripe]] account {name[:64]!r} in PAYRECON_GATEWAYS")
        return found

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

    # --- status API ---------------------------------------------------------------------------------

    def _api(self, account: str, client: httpx.AsyncClient) -> status.StripeAPI:
        return status.StripeAPI(account=self.account(account), client=client, retry=self.retry, sleep=self.sleep)

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        """GET the PaymentIntent (by its pi_ id, else by a metadata search on the order id)."""
        api = self._api(query.account, client)
        found = await status.find_intent(api, query)
        if found is None:
            return None
        intent, raw = found
        order_key = api.account.order_id_metadata_key
        return status.status_event(intent, raw, query, order_key=order_key, asked_at=self.clock())

    async def catch_up(
        self, account: str, cursor: int | None, client: httpx.AsyncClient
    ) -> tuple[list[PaymentEvent], int | None]:
        """Events since `cursor` (unix seconds, minus an overlap) from GET /v1/events, oldest first.

        Returns the events and the next cursor: the newest `created` seen, or `cursor` when nothing
        was listed. Overlap duplicates are absorbed by dedupe_key = event id.
        """
        return await status.catch_up(self._api(account, client), cursor, self.clock())
