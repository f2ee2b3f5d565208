"""A fake Stripe: PaymentIntents in memory, the REST paths payrecon reads, signed webhooks.

It follows reference/stripe.md, not our adapter: Bearer auth with Stripe's error JSON,
`expand[]=latest_charge`, metadata search, a newest-first /v1/events feed with cursors, and one
Event per state change, delivered pretty-printed with `Stripe-Signature: t=…,v1=…` signed anew
on every attempt and retried on anything but a 2xx. Control API under /_sim/.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import string
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.types import ASGIApp

from providers.base import Clock, PaymentStatus, utcnow
from providers.simkit import Faults, SimPayment, WebhookDispatcher, accepts_2xx, api_fault
from providers.stripe.signing import sign_header

# Made-up test credentials (tests/fixtures/vectors.json secrets): no configuration needed.
TEST_API_KEY = "sk_test_payreconSIM51mu1at0r0000000000000000"
TEST_WEBHOOK_SECRET = "whsec_payreconTEST7f3a9c1e5b2d4f608a1c3e5f7b9d0a2c"
WRONG_WEBHOOK_SECRET = "whsec_payreconWRONG000000000000000000000000000000"
V0_DECOY_SECRET = "whsec_payreconV0DECOY00000000000000000000000000"
API_VERSION = "2024-06-20"
_ALNUM = string.ascii_letters + string.digits
_TERMINAL = frozenset({"succeeded", "canceled"})
_SEARCH_CLAUSE = re.compile(
    r"\s*(?:metadata\[(?P<key>'(?:[^'\\]|\\.)*')\]|(?P<field>[a-z_]+))\s*:\s*(?P<value>'(?:[^'\\]|\\.)*')\s*"
)


class SimulatorError(ValueError):
    """A call Stripe itself would refuse (unknown payment, impossible transition, refund too large)."""

    def __init__(
        self, message: str, *, status_code: int = 400, code: str = "parameter_invalid", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.param = param


class CreatePayment(msgspec.Struct, kw_only=True):
    order_id: str
    amount: int
    currency: str
    account: str = "default"
    reference: str | None = None


class SetStatus(msgspec.Struct, kw_only=True):
    status: PaymentStatus


class RefundRequest(msgspec.Struct, kw_only=True):
    amount: int


def _stripe_error(
    status_code: int, message: str, *, code: str | None = None, param: str | None = None
) -> Response[Any]:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return Response({"error": error}, status_code=status_code)


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


class Simulator:
    """Stripe as payrecon sees it; implements `providers.simkit.SimulatedGateway`."""

    name = "stripe"

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        faults: Faults | None = None,
        client: httpx.AsyncClient | None = None,
        api_key: str = TEST_API_KEY,
        webhook_secrets: Sequence[str] = (TEST_WEBHOOK_SECRET,),
        account: str = "default",
        test_mode: bool = True,  # test-mode deliveries carry a decoy v0 signature
        retry_delays: Sequence[float] = (0.05, 0.1, 0.2),  # sandbox: 3 retries (hours, compressed)
        clock: Clock = utcnow,
    ) -> None:
        self.webhook_url = webhook_url
        self.faults = faults if faults is not None else Faults()
        self.dispatcher = WebhookDispatcher(self.faults, retry_delays=retry_delays, accepts=accepts_2xx, client=client)
        self.api_key = api_key
        self.webhook_secrets = list(webhook_secrets)
        self.account = account
        self.test_mode = test_mode
        self.clock = clock
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []  # oldest first; the API lists newest first
        self._ids = random.Random(self.faults.seed)
        self._api_rng = random.Random(self.faults.seed)

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

    def _authorized(self, request: Request[Any, Any, Any]) -> Response[Any] | None:
        value = request.headers.get("authorization", "")
        scheme, _, credential = value.partition(" ")
        key = credential.strip()
        if scheme.lower() == "basic":  # Stripe also takes the key as the Basic user name
            try:
                key = base64.b64decode(credential, validate=True).decode().partition(":")[0]
            except ValueError:
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        if not key:
            return _stripe_error(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if key != self.api_key:
            return _stripe_error(401, f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}")
        return None

    async def _guard(self, request: Request[Any, Any, Any]) -> Response[Any] | None:
        return await api_fault(self.faults, self._api_rng) or self._authorized(request)

    def _render_intent(self, pi: dict[str, Any], expand: Sequence[str], prefix: str = "") -> dict[str, Any]:
        out = copy.deepcopy(pi)
        if f"{prefix}latest_charge" in expand and pi["latest_charge"]:
            out["latest_charge"] = copy.deepcopy(self.charges[pi["latest_charge"]])
        return out

    def _search(self, query: str) -> list[dict[str, Any]]:
        clauses = [c for c in re.split(r"\s+AND\s+", query.strip()) if c]
        if not clauses:
            raise SimulatorError("The search query is empty", param="query")
        tests: list[tuple[str | None, str, str]] = []
        for clause in clauses:
            m = _SEARCH_CLAUSE.fullmatch(clause)
            if m is None or (m["field"] is not None and m["field"] not in ("status", "currency")):
                raise SimulatorError(f"Invalid search query: {clause!r}", param="query")
            key = _unquote(m["key"]) if m["key"] is not None else None
            tests.append((key, m["field"] or "metadata", _unquote(m["value"])))
        found = []
        for pi in self.intents.values():
            if all(
                (pi["metadata"].get(key) if key is not None else pi.get(field)) == value for key, field, value in tests
            ):
                found.append(pi)
        return sorted(found, key=lambda pi: pi["created"], reverse=True)

    def _list_events(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        q = request.query_params
        try:
            limit = int(q.get("limit", "10"))
        except ValueError:
            raise SimulatorError("Invalid integer: limit", param="limit", code="parameter_invalid_integer") from None
        if not 1 <= limit <= 100:
            raise SimulatorError("limit must be between 1 and 100", param="limit", code="parameter_invalid_integer")
        if "type" in q and "types[]" in q:
            raise SimulatorError("You may only specify one of these parameters: type, types.", param="types")
        seq = {e["id"]: i for i, e in enumerate(self.events)}
        bounds: dict[str, int] = {}
        for op in ("gt", "gte", "lt", "lte"):
            raw = q.get(f"created[{op}]")
            if raw is not None:
                try:
                    bounds[op] = int(raw)
                except ValueError:
                    raise SimulatorError(
                        f"Invalid integer: created[{op}]", param="created", code="parameter_invalid_integer"
                    ) from None
        kinds = q.getall("types[]", [])
        pattern = q.get("type")
        matcher = re.compile(re.escape(pattern).replace(r"\*", ".*")) if pattern else None

        def keep(e: dict[str, Any]) -> bool:
            c = e["created"]
            if ("gt" in bounds and c <= bounds["gt"]) or ("gte" in bounds and c < bounds["gte"]):
                return False
            if ("lt" in bounds and c >= bounds["lt"]) or ("lte" in bounds and c > bounds["lte"]):
                return False
            if kinds and e["type"] not in kinds:
                return False
            return matcher is None or matcher.fullmatch(e["type"]) is not None

        newest_first = [e for e in reversed(self.events) if keep(e)]
        for cursor in ("starting_after", "ending_before"):
            if q.get(cursor) is not None and q[cursor] not in seq:
                raise SimulatorError(f"No such event: '{q[cursor]}'", param=cursor, code="resource_missing")
        if q.get("starting_after") is not None:
            after = seq[q["starting_after"]]
            newest_first = [e for e in newest_first if seq[e["id"]] < after]
            page, has_more = newest_first[:limit], len(newest_first) > limit
        elif q.get("ending_before") is not None:
            before = seq[q["ending_before"]]
            newer = [e for e in newest_first if seq[e["id"]] > before]
            page, has_more = newer[-limit:], len(newer) > limit
        else:
            page, has_more = newest_first[:limit], len(newest_first) > limit
        return {"object": "list", "data": page, "has_more": has_more, "url": "/v1/events"}

    def asgi_app(self) -> ASGIApp:
        sim = self

        def failed(exc: SimulatorError) -> Response[Any]:
            return _stripe_error(exc.status_code, str(exc), code=exc.code, param=exc.param)

        @get("/v1/payment_intents/search")
        async def search_intents(request: Request[Any, Any, Any]) -> Response[Any]:
            if (refused := await sim._guard(request)) is not None:
                return refused
            expand = request.query_params.getall("expand[]", [])
            try:
                found = sim._search(request.query_params.get("query", ""))
            except SimulatorError as exc:
                return failed(exc)
            limit = request.query_params.get("limit", "10")
            if not limit.isdigit() or not 1 <= int(limit) <= 100:
                return _stripe_error(400, "limit must be between 1 and 100", code="parameter_invalid_integer")
            found, more = found[: int(limit)], len(found) > int(limit)
            data = [sim._render_intent(pi, expand, "data.") for pi in found]
            return Response(
                {
                    "object": "search_result",
                    "data": data,
                    "has_more": more,
                    "next_page": None,
                    "url": "/v1/payment_intents/search",
                }
            )

        @get("/v1/payment_intents/{intent_id:str}")
        async def get_intent(intent_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            if (refused := await sim._guard(request)) is not None:
                return refused
            pi = sim.intents.get(intent_id)
            if pi is None:
                return _stripe_error(
                    404, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="intent"
                )
            return Response(sim._render_intent(pi, request.query_params.getall("expand[]", [])))

        @get("/v1/events")
        async def list_events(request: Request[Any, Any, Any]) -> Response[Any]:
            if (refused := await sim._guard(request)) is not None:
                return refused
            try:
                return Response(sim._list_events(request))
            except SimulatorError as exc:
                return failed(exc)

        @get("/v1/events/{event_id:str}")
        async def get_event(event_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            if (refused := await sim._guard(request)) is not None:
                return refused
            event = next((e for e in sim.events if e["id"] == event_id), None)
            if event is None:
                return _stripe_error(404, f"No such event: '{event_id}'", code="resource_missing", param="id")
            return Response(event)

        # --- control API (not Stripe's): drive the simulation ---

        @post("/_sim/payments", status_code=201)
        async def sim_create(data: JSONBody[CreatePayment]) -> Response[Any]:
            try:
                made = sim.create_payment(
                    order_id=data.order_id,
                    amount=data.amount,
                    currency=data.currency,
                    account=data.account,
                    reference=data.reference,
                )
            except SimulatorError as exc:
                return failed(exc)
            return Response(msgspec.to_builtins(made), status_code=201)

        @get("/_sim/payments/{reference:str}")
        async def sim_read(reference: FromPath[str]) -> Response[Any]:
            pi = sim.intents.get(reference)
            if pi is None:
                return _stripe_error(404, f"No such payment_intent: '{reference}'", code="resource_missing")
            return Response(sim._render_intent(pi, ["latest_charge"]))

        @post("/_sim/payments/{reference:str}/status", status_code=200)
        async def sim_status(reference: FromPath[str], data: JSONBody[SetStatus]) -> Response[Any]:
            try:
                sim.set_status(reference, data.status)
            except SimulatorError as exc:
                return failed(exc)
            return Response(sim._render_intent(sim.intents[reference], ["latest_charge"]))

        @post("/_sim/payments/{reference:str}/refunds", status_code=200)
        async def sim_refund(reference: FromPath[str], data: JSONBody[RefundRequest]) -> Response[Any]:
            try:
                sim.refund(reference, data.amount)
            except SimulatorError as exc:
                return failed(exc)
            return Response(sim._render_intent(sim.intents[reference], ["latest_charge"]))

        @get("/_sim/faults")
        async def sim_faults() -> Faults:
            return sim.faults

        @put("/_sim/faults")
        async def sim_set_faults(data: JSONBody[Faults]) -> Faults:
            sim.replace_faults(data)
            return sim.faults

        @get("/_sim/deliveries")
        async def sim_deliveries() -> dict[str, Any]:
            return {
                "deliveries": msgspec.to_builtins(sim.dispatcher.deliveries),
                "dropped": list(sim.dispatcher.dropped),
            }

        return Litestar(
            route_handlers=[
                search_intents,
                get_intent,
                list_events,
                get_event,
                sim_create,
                sim_read,
                sim_status,
                sim_refund,
                sim_faults,
                sim_set_faults,
                sim_deliveries,
            ],
            openapi_config=None,
        )

    def replace_faults(self, faults: Faults) -> None:
        """Swap every knob in place (the dispatcher holds the same object); a new seed reseeds."""
        for field in Faults.__struct_fields__:
            setattr(self.faults, field, getattr(faults, field))
        if faults.seed is not None:
            self.dispatcher.rng.seed(faults.seed)
            self._api_rng.seed(faults.seed)

    def gateway_config(self, api_base: str) -> dict[str, object]:
        return {
            "account": self.account,
            "api_base": api_base,
            "api_key": self.api_key,
            "webhook_secrets": list(self.webhook_secrets),
        }
