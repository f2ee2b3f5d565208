"""A fake Stripe: PaymentIntents in memory, the REST paths payrecon reads, signed webhooks.

It follows reference/stripe.md, not our adapter: Bearer auth with Stripe's error JSON,
`expand[]=latest_charge`, metadata search, a newest-first /v1/events feed with cursors, and one
Event per state change, delivered pretty-printed with `Stripe-Signature: t=…,v1=…` signed anew
on every attempt and retried on anything but a 2xx. Control API under /_sim/.
"""

from __future__ import annotations

import copy
import json
import random
import string
from collections.abc import Iterable, Sequence
from typing import Any, Unpack

import httpx
from litestar import Response
from litestar.types import ASGIApp

from providers.base import PaymentStatus
from providers.simkit import SimOptions, SimPayment, SimulatorBase
from providers.stripe.sim.app import SimulatorError, build_app, render_intent, stripe_error
from providers.stripe.sim.signing import sign_header

# Made-up test credentials (tests/fixtures/vectors.json secrets): no configuration needed.
TEST_API_KEY = "sk_test_payreconSIM51mu1at0r0000000000000000"
TEST_WEBHOOK_SECRET = "whsec_payreconTEST7f3a9c1e5b2d4f608a1c3e5f7b9d0a2c"
WRONG_WEBHOOK_SECRET = "whsec_payreconWRONG000000000000000000000000000000"
V0_DECOY_SECRET = "whsec_payreconV0DECOY00000000000000000000000000"
API_VERSION = "2024-06-20"
_ALNUM = string.ascii_letters + string.digits
_TERMINAL = frozenset({"succeeded", "canceled"})


class Simulator(SimulatorBase):
    """Stripe as payrecon sees it; implements `providers.simkit.SimulatedGateway`."""

    name = "stripe"
    refund_path = "refunds"  # as Stripe's own API names them

    def __init__(
        self,
        *,
        api_key: str = TEST_API_KEY,
        webhook_secrets: Sequence[str] = (TEST_WEBHOOK_SECRET,),
        test_mode: bool = True,  # test-mode deliveries carry a decoy v0 signature
        retry_delays: Sequence[float] = (0.05, 0.1, 0.2),  # sandbox: 3 retries (hours, compressed)
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(retry_delays=retry_delays, **options)
        self.api_key = api_key
        self.webhook_secrets = list(webhook_secrets)
        self.test_mode = test_mode
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # oldest first; the API lists newest first
        self._ids = random.Random(self.faults.seed)

    # --- the payment life -------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock().timestamp())

    def _new_id(self, prefix: str) -> str:
        return prefix + "".join(self._ids.choices(_ALNUM, k=24))

    def create_payment(
        self, *, order_id: str, amount: int, currency: str, account: str = "default", reference: str | None = None
    ) -> SimPayment:
        """A PaymentIntent in `requires_payment_method` with `metadata.order_id`; no webhook yet."""
        if amount <= 0:
            raise SimulatorError(
                "amount must be a positive integer in the currency's minor unit", code="amount_too_small"
            )
        pi_id = reference or self._new_id("pi_3")
        if pi_id in self.intents:
            raise SimulatorError(f"PaymentIntent {pi_id} exists", status_code=409, code="resource_already_exists")
        self.intents[pi_id] = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "created": self._now(),
            "currency": currency.lower(),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {"order_id": order_id},
            "status": "requires_payment_method",
        }
        return SimPayment(reference=pi_id)

    def intent(self, reference: str) -> dict[str, Any]:
        found = self.intents.get(reference)
        if found is None:
            raise SimulatorError(f"No such payment_intent: '{reference}'", status_code=404, code="resource_missing")
        return found

    def set_status(self, reference: str, status: PaymentStatus) -> None:
        """Move the PaymentIntent as Stripe would and emit the matching event."""
        pi = self.intent(reference)
        if status in (PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED):
            charge = self._charge_of(pi)
            left = charge["amount_captured"] - charge["amount_refunded"] if charge else 0
            self.refund(reference, left if status is PaymentStatus.REFUNDED else max(1, left // 2))
            return
        if pi["status"] in _TERMINAL:
            raise SimulatorError(
                f"This PaymentIntent's status is {pi['status']}: it cannot become {status}",
                status_code=409,
                code="payment_intent_unexpected_state",
            )
        pi["last_payment_error"] = None
        match status:
            case PaymentStatus.PENDING:
                pi["status"] = "requires_action"
                self._emit("payment_intent.requires_action", pi)
            case PaymentStatus.PROCESSING:
                pi["status"] = "processing"
                self._emit("payment_intent.processing", pi)
            case PaymentStatus.AUTHORIZED:
                pi.update(status="requires_capture", capture_method="manual", amount_capturable=pi["amount"])
                self._new_charge(pi, captured=False)
                self._emit("payment_intent.amount_capturable_updated", pi)
            case PaymentStatus.SUCCEEDED:
                charge = self._charge_of(pi) or self._new_charge(pi, captured=True)
                charge.update(captured=True, amount_captured=charge["amount"])
                pi.update(status="succeeded", amount_received=pi["amount"], amount_capturable=0)
                self._emit("payment_intent.succeeded", pi)
            case PaymentStatus.FAILED:
                pi["status"] = "requires_payment_method"  # Stripe's state after a failed attempt: retryable
                pi["last_payment_error"] = {
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined.",
                    "type": "card_error",
                }
                self._emit("payment_intent.payment_failed", pi)
            case PaymentStatus.CANCELED:
                pi.update(status="canceled", cancellation_reason="abandoned", amount_capturable=0)
                self._emit("payment_intent.canceled", pi)

    def refund(self, reference: str, amount: int) -> None:
        """Refund part of a succeeded PaymentIntent: the Charge's amount_refunded grows, charge.refunded."""
        pi = self.intent(reference)
        charge = self._charge_of(pi)
        if pi["status"] != "succeeded" or charge is None:
            raise SimulatorError(
                f"PaymentIntent {reference} has no succeeded charge to refund", code="charge_not_refundable"
            )
        left = charge["amount_captured"] - charge["amount_refunded"]
        if not 0 < amount <= left:
            raise SimulatorError(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                code="amount_too_large",
            )
        refund_id = self._new_id("re_3")
        self.refunds[refund_id] = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": self._now(),
            "currency": charge["currency"],
            "payment_intent": pi["id"],
            "status": "succeeded",
        }
        previous = {"amount_refunded": charge["amount_refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._emit("charge.refunded", charge, previous)

    def _charge_of(self, pi: dict[str, Any]) -> dict[str, Any] | None:
        return self.charges.get(pi["latest_charge"]) if pi["latest_charge"] else None

    def _new_charge(self, pi: dict[str, Any], *, captured: bool) -> dict[str, Any]:
        charge = {
            "id": self._new_id("ch_3"),
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"] if captured else 0,
            "amount_refunded": 0,
            "captured": captured,
            "created": self._now(),
            "currency": pi["currency"],
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "paid": True,
            "payment_intent": pi["id"],
            "refunded": False,
            "status": "succeeded",
        }
        self.charges[charge["id"]] = charge
        pi["latest_charge"] = charge["id"]
        return charge

    # --- events and webhooks ----------------------------------------------------------------------

    def _emit(self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event = {
            "id": self._new_id("evt_3"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self._now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if self.webhook_url else 0,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        self.events.append(event)
        if self.webhook_url is not None:
            body = json.dumps(event, indent=2).encode()  # Stripe pretty-prints; receivers must not care
            self.dispatcher.send(lambda wrong_key: self.webhook_request(body, wrong_key=wrong_key))
        return event

    def webhook_request(self, body: bytes, *, wrong_key: bool = False) -> httpx.Request:
        """One delivery attempt: signed now, with one v1 per active secret (rotation)."""
        assert self.webhook_url is not None
        secrets = [WRONG_WEBHOOK_SECRET] if wrong_key else self.webhook_secrets
        header = sign_header(body, secrets, self._now(), v0_secret=V0_DECOY_SECRET if self.test_mode else None)
        return httpx.Request(
            "POST",
            self.webhook_url,
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": header,
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )

    # --- the REST API -----------------------------------------------------------------------------

    def asgi_app(self) -> ASGIApp:
        """Stripe's REST paths payrecon reads, plus the /_sim/ control API (see `sim.app`)."""
        return build_app(self)

    def gateway_config(self, api_base: str) -> dict[str, object]:
        return {
            "account": self.account,
            "api_base": api_base,
            "api_key": self.api_key,
            "webhook_secrets": list(self.webhook_secrets),
        }

    # --- the control API --------------------------------------------------------------------------

    def view(self, reference: str) -> dict[str, Any]:
        return render_intent(self, self.intent(reference), ["latest_charge"])

    def references(self) -> Iterable[str]:
        return self.intents

    def refused(self, error: Exception) -> Response[bytes] | None:
        """What Stripe would refuse is answered in Stripe's error format."""
        if isinstance(error, SimulatorError):
            return stripe_error(error.status_code, str(error), code=error.code, param=error.param)
        return super().refused(error)
