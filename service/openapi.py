"""The OpenAPI document as served at /schema/openapi.json, with what litestar's generator gets wrong fixed.

litestar turns integer bounds into floats (`9.223372036854776e+18`) and leaves string constraints
beside a `oneOf` of an optional field instead of on its string branch; clients generated from the
document, and schemathesis, read both literally.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

_INT64_MAX = 2**63 - 1
_STRING_KEYS = ("maxLength", "minLength", "pattern", "format")
_NUMBER_KEYS = ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum")


def _integer(bound: Any) -> Any:
    if not isinstance(bound, float) or not bound.is_integer():
        return bound
    # float(2**63 - 1) rounds up to 2**63: the bound was PostgreSQL's bigint maximum
    return min(int(bound), _INT64_MAX) if bound > 0 else max(int(bound), -_INT64_MAX - 1)


def polish(node: Any) -> Any:
    """Fix the generated schema in place (recursively) and return it."""
    if isinstance(node, list):
        for item in node:
            polish(item)
    elif isinstance(node, dict):
        branches = node.get("oneOf")
        if isinstance(branches, list):
            for kind, keys in (("string", _STRING_KEYS), ("integer", _NUMBER_KEYS)):
                moved = {k: node.pop(k) for k in keys if k in node}
                for branch in branches:
                    if moved and isinstance(branch, dict) and branch.get("type") == kind:
                        branch.update(moved)
        if node.get("type") == "integer":
            for key in _NUMBER_KEYS:
                if key in node:
                    node[key] = _integer(node[key])
        for value in node.values():
            polish(value)
    return node


class OpenAPIJson(JsonRenderPlugin):
    """`/schema/openapi.json`, polished and documented."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, document(polish(openapi_schema)))


# What each field name means wherever it appears (one meaning per name in this API), with an example.
# A "Schema.field" key overrides the name's entry for that schema. Fields documented in their Struct
# (msgspec.Meta(description=…)) keep their own words.
T = "2026-11-24T10:00:00Z"
FIELDS: dict[str, tuple[str, object]] = {
    "id": ("The identifier.", "ord_1001"),
    "Order.id": ("The shop's order id, as registered.", "ord_1001"),
    "NewOrder.id": ("The shop's order id (1–128 characters, no whitespace or `/`).", "ord_1001"),
    "AnomalyRecord.id": ("The anomaly's id.", 17),
    "Delivery.id": ("The delivery's id (for redelivery).", 42),
    "Endpoint.id": ("The endpoint's id.", 3),
    "ReconcileRun.id": ("The run's id.", 12),
    "StoredEvent.id": ("The payment event's id in the audit trail.", 981),
    "account": ("The gateway account (a `[[gateway]]` table of PAYRECON_GATEWAYS).", "default"),
    "added_at": ("When the reference was added.", T),
    "amount": ("Integer amount in the currency's minor unit (2599 USD is 25.99 dollars; VND has none).", 150000),
    "applied_at": ("When the ledger applied the event; null if it changed nothing.", T),
    "at": ("The gateway's time of it (or when we received it).", T),
    "attempted_at": ("When the attempt started.", T),
    "attempts": ("Every HTTP attempt, oldest first.", []),
    "checks": ("Each dependency and its state.", {"database": "ok", "redis": "ok"}),
    "circuit_open_until": ("Nothing is sent to the endpoint before this time; null when the circuit is closed.", None),
    "claimed_order_id": ("The order id the gateway carried (Stripe metadata.order_id), if any.", "ord_1001"),
    "code": ("The gateway's code, prefixed by the gateway.", "vnpay:24"),
    "consecutive_failures": ("Failed attempts in a row; the circuit opens at 5.", 0),
    "counts": ("Findings per gateway and kind.", {"vnpay": {"in_sync": 10, "repaired": 1}}),
    "created_at": ("When it was created.", T),
    "cursor": ("The `next_cursor` of the previous page; absent for the first page.", None),
    "run_id": ("The reconciliation run.", 12),
    "gateway_status": ("What the gateway's status API said, mapped to our statuses.", "succeeded"),
    "currency": ("ISO 4217 currency code, upper case.", "VND"),
    "dedupe_key": ("The gateway's event id (or a composite for gateways without one): the idempotency key.", "evt_1"),
    "delivered_at": ("When a 2xx answer was received; null until then.", T),
    "description": ("For people.", "shop backend, production"),
    "detail": ("What went wrong with this request, for a person.", "no order ord_1001"),
    "AnomalyRecord.detail": ("What was expected and what came.", {"expected": {"amount": 150000}}),
    "dry_run": ("Findings recorded, no order changed.", False),
    "enabled": ("Deliveries are made (false: disabled).", True),
    "endpoint": ("The endpoint.", None),
    "endpoint_id": ("The endpoint this delivery goes to.", 3),
    "error": ("What went wrong; null when nothing did.", None),
    "errors": ("Each offending field; empty when no field is at fault.", [{"field": "currency", "message": "…"}]),
    "event_id": ("The payment event in the audit trail.", 981),
    "event_types": ("Types received; empty: every type.", ["order.succeeded", "order.refunded"]),
    "events": ("Every event matched to the order, with its outcome and source.", []),
    "field": ("The offending field: a body path or a query or path parameter.", "provider_data.vnp_create_date"),
    "finished_at": ("When the run ended; null while running.", T),
    "flag": ("Something about the event ops should know (a fraud review, a reversal…).", None),
    "from_status": ("The status before the step.", "processing"),
    "from_version": ("The order's version before the step.", 2),
    "items": ("This page's items.", []),
    "kind": ("The kind.", None),
    "last_failure": ("The newest failure or cancellation its gateway reported; null if none.", None),
    "latency_ms": ("Milliseconds until the answer (or the failure).", 87),
    "live_secrets": ("Secrets signing deliveries now: 2 during a rotation's overlap.", 1),
    "message": ("What is wrong, for a person.", "vnpay needs it to query the payment's status later"),
    "Failure.message": ("The gateway's own wording.", "Customer canceled the payment"),
    "metadata": ("The shop's own JSON object, kept as given (at most 50 keys, 16 KiB).", {"cart": "c-77"}),
    "next_attempt_at": ("When the next attempt is due; null once delivered or failed.", T),
    "next_cursor": ("Pass as `cursor` for the next page; null on the last page.", None),
    "notification_id": ("The outbox notification delivered.", 311),
    "occurred_at": ("The gateway's own time of the event.", T),
    "order_id": ("The order.", "ord_1001"),
    "outcome": ("What the ledger did with the event.", "applied"),
    "paid_at": ("When the order was paid; null until then.", T),
    "OrderPayment.paid_at": ("The earliest gateway time proving the payment captured money; null if none yet.", T),
    "payments": ("Every payment (gateway payment id) the order has seen, with its own refunds; first seen first.", []),
    "first_seen_at": ("When we first heard of the payment.", T),
    "OrderPayment.status": ("The payment's own status (the order's rules over its events alone).", "succeeded"),
    "OrderPayment.refunded_amount": ("Cumulative refunded amount of this payment, minor units.", 0),
    "Transition.provider_payment_id": ("The payment whose news made the step (a refund: the one refunded).", "pi_3"),
    "params": ("The run's parameters.", {"provider": None, "since": None}),
    "payload": ("The verified gateway payload, kept for audit.", {}),
    "provider": ("The gateway.", "vnpay"),
    "provider_data": (
        "What the gateway's status API needs later (VNPay: `vnp_create_date`).",
        {"vnp_create_date": "20261124100000"},
    ),
    "provider_payment_id": ("The gateway's payment id (PaymentIntent, MoMo transId, VNPay TransactionNo).", "14226112"),
    "reason": ("The gateway's code and message.", "vnpay:24 Customer canceled the payment"),
    "received_at": ("When we received it.", T),
    "reference": ("What the gateway echoes: VNPay vnp_TxnRef, MoMo orderId, Stripe PaymentIntent id.", "ord_1001"),
    "references": ("Every gateway reference of the order, one per payment attempt.", []),
    "refunded_amount": ("Cumulative refunded amount of the paying payment, minor units.", 0),
    "resolved_at": ("When it was resolved; null while open.", None),
    "response_body": ("The first bytes of the endpoint's answer.", ""),
    "secret": ("The signing secret, shown only in this answer.", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    "since": ("Audit every order created since this time.", T),
    "slot": ("The cron slot of a scheduled run; null otherwise.", None),
    "source": ("Who brought the event: webhook, reconciler, catch_up, manual.", "webhook"),
    "started_at": ("When the run started.", T),
    "status": ("The status.", "pending"),
    "Order.status": ("The payment's status.", "pending"),
    "Problem.status": ("The HTTP status code.", 400),
    "Delivery.status": ("pending, delivered, or failed (the retry schedule is spent).", "delivered"),
    "status_code": ("The endpoint's HTTP status; null when it gave no answer.", 204),
    "title": ("The same for every problem of this type.", "Invalid request"),
    "to_status": ("The status after the step.", "succeeded"),
    "to_version": ("The order's version after the step.", 3),
    "transitions": ("Every forward step of the order.", []),
    "tries": ("Attempts in the current round (a redelivery starts a new one).", 1),
    "trigger": ("What started the run.", "api"),
    "type": ("The kind.", "order.succeeded"),
    "Problem.type": ("A URI naming the kind of problem.", "https://payrecon.dev/problems/invalid-request"),
    "updated_at": ("When it last changed.", T),
    "url": ("Where deliveries are POSTed.", "https://shop.example/hooks/payrecon"),
    "version": ("The order's version: it grows by one per transition; discard news of a lower one.", 3),
    # rejected and held webhook deliveries (service/rejections.py, service/replay.py)
    "RejectedDelivery.id": ("The rejected delivery's id (for replay).", 7),
    "RejectedDeliveryDetail.id": ("The rejected delivery's id (for replay).", 7),
    "RejectedDelivery.reason": ("Why it was refused or held: signature, malformed, unstorable…", "signature"),
    "RejectedDeliveryDetail.reason": ("Why it was refused or held: signature, malformed, unstorable…", "malformed"),
    "RejectedDelivery.detail": ("What was wrong with it, for a person.", "no v1 signature matched"),
    "RejectedDeliveryDetail.detail": ("What was wrong with it, for a person.", "amount beyond 2^63-1"),
    "remote_addr": ("The client address (behind trusted proxies, the client they name).", "54.187.174.169"),
    "verified": ("Held: the signature checked out but it could not be processed as sent.", False),
    "method": ("The HTTP method it came with.", "POST"),
    "body_sha256": ("SHA-256 of the body, hex: matches the gateway's own delivery log.", "9f86d08…"),
    "body_size": ("Bytes of the body (announced or read).", 1834),
    "has_body": ("The raw request was kept, so it can be replayed.", True),
    "deliveries": ("How many times the gateway sent this same held request.", 1),
    "last_received_at": ("When it was last received again; null if only once.", None),
    "replayed_at": ("When a replay last got it through; null if never.", None),
    "replay_outcome": ("The ledger outcomes of the last replay.", "applied"),
    "query_string": ("The query string as sent (VNPay signs it).", "vnp_Amount=15000000&vnp_TmnCode=…"),
    "raw_headers": ("The headers kept for verification (signature, content type).", {"stripe-signature": "t=…"}),
    "raw_body": ("The body as sent, base64.", "eyJpZCI6ImV2dF8xIn0="),
    "rejected_id": ("The rejected delivery.", 7),
    "ok": ("Verified, parsed and (unless dry_run) applied.", True),
    "outcomes": ("The ledger's outcome per event it carried.", ["applied"]),
    "ReplayResult.dry_run": ("Applied in a transaction that was rolled back.", False),
    "ReplayResult.error": ("Why it still cannot be processed; null when ok.", None),
    "ReplayResult.provider": ("The gateway.", "stripe"),
    "webhook_id": ("The `webhook-id` header: the same on every attempt; the shop's dedupe key.", "msg_311"),
}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Give every property and parameter a description and an example, from FIELDS where it has none."""
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        for prop, spec in component.get("properties", {}).items():
            found = FIELDS.get(f"{name}.{prop}") or FIELDS.get(prop)
            if found is not None:
                description, example = found
                spec.setdefault("description", description)
                if example is not None:
                    spec.setdefault("examples", [example])
    for item in schema.get("paths", {}).values():
        for op in item.values():
            for param in op.get("parameters", []):
                found = FIELDS.get(param["name"])
                if found is not None:
                    description, example = found
                    param.setdefault("description", description)
                    if example is not None:
                        param.setdefault("examples", {"example": {"value": example}})
    return schema
