"""Stripe's REST API as payrecon reads it: PaymentIntent status and the Events catch-up feed.

Every call goes through `providers.http.send_with_retry` (timeouts, 5xx, 429 + Retry-After);
definite refusals become GatewayRejectedError. Reference: reference/stripe.md §6.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx
import msgspec

from providers.answers import status_answer
from providers.base import PaymentEvent, PaymentStatus, StatusQuery
from providers.errors import GatewayRejectedError, GatewayUnavailableError, MalformedError
from providers.http import ApiClient, RetryPolicy, Sleep, send_with_retry
from providers.stripe.account import Account
from providers.stripe.events import (
    PROVIDER,
    cancellation,
    events_from_payload,
    failure_reason,
    intent_amount,
    refund_status,
)
from providers.stripe.wire import (
    EVENT_RULES,
    PAYMENT_INTENT_STATUS,
    Charge,
    ErrorBody,
    ErrorDetail,
    EventList,
    PaymentIntent,
    SearchResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_SIZE = 100  # the Events API maximum
MAX_PAGES = 1000  # 100 000 events: a guard against a server that keeps saying has_more


class StripeAPI(msgspec.Struct, kw_only=True):
    """One account's view of the API for one call site (the client is the caller's)."""

    account: Account
    client: httpx.AsyncClient
    retry: RetryPolicy
    sleep: Sleep

    async def get(self, path: str, params: Sequence[tuple[str, str | int]]) -> httpx.Response | None:
        """GET a resource; None on 404 resource_missing. Raises GatewayRejectedError / GatewayUnavailableError."""
        headers = {"Authorization": f"Bearer {self.account.api_key}", "Accept": "application/json"}
        if self.account.api_version:
            headers["Stripe-Version"] = self.account.api_version
        response = await send_with_retry(
            self.client,
            "GET",
            self.account.api_base.rstrip("/") + path,
            gateway=PROVIDER,
            policy=self.retry,
            request_timeout=self.account.timeout,
            sleep=self.sleep,
            headers=headers,
            params=list(params),
        )
        if response.status_code == 200:
            return response
        error = _error_of(response)
        if response.status_code == 404 and error.code == "resource_missing":
            return None
        hint = ""
        if response.status_code in (401, 403):
            hint = " (is PAYRECON_GATEWAYS' api_key right for this account and mode?)"
        raise GatewayRejectedError(
            f"stripe GET {path} answered HTTP {response.status_code} "
            f"{error.type or ''}/{error.code or ''}: {error.message or response.text[:200]}{hint}"
        )

    def decode(self, response: httpx.Response, kind: type[T], what: str) -> tuple[T, Any]:
        """The answer as `kind`, and as plain JSON (kept whole for audit: Stripe adds fields we don't read)."""
        try:
            raw = msgspec.json.decode(response.content)
            return msgspec.convert(raw, kind), raw
        except (ValueError, RecursionError) as exc:  # msgspec Decode/ValidationError, UnicodeDecodeError
            # a 200 that is not the resource is a broken proxy or a partial answer, not a refusal
            raise GatewayUnavailableError(f"stripe {what}: unreadable 200 answer ({exc})") from None


def _error_of(response: httpx.Response) -> ErrorDetail:
    try:
        return msgspec.json.decode(response.content, type=ErrorBody).error
    except (ValueError, RecursionError):
        return ErrorDetail()  # not Stripe's error shape (a proxy, a simulated outage): status code alone


def search_query(key: str, order_id: str) -> str:
    """Stripe Search syntax; quotes and backslashes inside values are backslash-escaped."""

    def quote(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return f"metadata[{quote(key)}]:{quote(order_id)}"


def intent_status(intent: PaymentIntent) -> tuple[PaymentStatus, int | None, str | None, str | None]:
    """(status, cumulative refunded amount, reason, flag) of a PaymentIntent read from the API."""
    status = PAYMENT_INTENT_STATUS.get(intent.status)
    if status is None:
        return PaymentStatus.PENDING, None, None, f"stripe: unlisted PaymentIntent status {intent.status!r}"
    if intent.status == "requires_payment_method" and intent.last_payment_error is not None:
        return PaymentStatus.FAILED, None, failure_reason(intent), None
    if status is PaymentStatus.CANCELED:
        return status, None, *cancellation(intent)
    if status is PaymentStatus.SUCCEEDED and isinstance(intent.latest_charge, Charge):
        refunded = refund_status(intent.latest_charge)
        if refunded is not None:
            return refunded, intent.latest_charge.amount_refunded, None, None
    return status, None, None, None


def status_event(
    intent: PaymentIntent, raw: dict[str, Any], query: StatusQuery, *, order_key: str, asked_at: datetime
) -> PaymentEvent:
    status, refunded, reason, flag = intent_status(intent)
    amount = intent_amount(intent, status)
    if refunded is not None and isinstance(intent.latest_charge, Charge):
        amount = intent.latest_charge.amount  # the original payment; refunded_amount is cumulative
    return status_answer(
        PROVIDER,
        query,
        status=status,
        amount=amount,
        currency=intent.currency.upper(),
        asked_at=asked_at,
        provider_payment_id=intent.id,
        refunded_amount=refunded,
        order_id=(intent.metadata or {}).get(order_key) or query.order_id,
        reason=reason,
        flag=flag,
        payload=raw,
    )


async def find_intent(api: StripeAPI, query: StatusQuery) -> tuple[PaymentIntent, dict[str, Any]] | None:
    """The PaymentIntent (with its latest charge expanded) and its raw JSON; None if Stripe has none."""
    pi_id = next((r for r in (query.reference, query.provider_payment_id) if r and r.startswith("pi_")), None)
    if pi_id is not None:
        response = await api.get(f"/v1/payment_intents/{pi_id}", [("expand[]", "latest_charge")])
        return None if response is None else api.decode(response, PaymentIntent, f"payment_intent {pi_id}")
    # No PaymentIntent id known: find it by our order id (Search is eventually consistent, seconds).
    params: list[tuple[str, str | int]] = [
        ("query", search_query(api.account.order_id_metadata_key, query.order_id)),
        ("expand[]", "data.latest_charge"),
        ("limit", PAGE_SIZE),
    ]
    response = await api.get("/v1/payment_intents/search", params)
    if response is None:
        return None
    result, raw = api.decode(response, SearchResult, "payment_intents/search")
    if not result.data:
        return None
    # several attempts for one order: the one that got furthest tells the order's state, then the newest
    best = max(
        range(len(result.data)),
        key=lambda i: (intent_status(result.data[i])[0].layer, result.data[i].created or 0),
    )
    return result.data[best], raw["data"][best]


async def catch_up(api: StripeAPI, cursor: int | None, now: datetime) -> tuple[list[PaymentEvent], int | None]:
    """Read /v1/events since `cursor − overlap` (or the horizon) and normalize them, oldest first."""
    account = api.account
    since = int(now.timestamp()) - account.catch_up_horizon_s if cursor is None else cursor - account.catch_up_overlap_s
    base: list[tuple[str, str | int]] = [("created[gte]", max(0, since)), ("limit", PAGE_SIZE)]
    base += [("types[]", t) for t in EVENT_RULES]  # ≤ 20 names, the API's limit
    raw: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(MAX_PAGES):
        response = await api.get("/v1/events", base + ([("starting_after", after)] if after else []))
        if response is None:
            raise GatewayRejectedError("stripe GET /v1/events answered 404: is api_base right?")
        page, _ = api.decode(response, EventList, "events list")
        raw.extend(page.data)
        last = page.data[-1].get("id") if page.data else None
        if not page.has_more or not isinstance(last, str) or last == after:
            break
        after = last
    events: list[PaymentEvent] = []
    newest = cursor
    for payload in reversed(raw):  # the feed is newest first; the ledger gets them oldest first
        created = payload.get("created")
        if isinstance(created, int) and not isinstance(created, bool):
            newest = created if newest is None else max(newest, created)
        try:
            events.extend(
                events_from_payload(payload, account=account.account, order_key=account.order_id_metadata_key)
            )
        except MalformedError as exc:  # one unreadable event must not stop the feed forever
            log.warning("stripe catch-up: skipping event %s: %s", payload.get("id"), exc)
    return events, newest


class StatusClient(ApiClient[Account]):
    """Stripe's PaymentIntent API for every configured account (GET by pi_ id, else a metadata search)."""

    gateway = PROVIDER

    def api(self, account: str, client: httpx.AsyncClient) -> StripeAPI:
        return StripeAPI(account=self.account(account), client=client, retry=self.retry, sleep=self.sleep)

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        api = self.api(query.account, client)
        found = await find_intent(api, query)
        if found is None:
            return None
        intent, raw = found
        return status_event(intent, raw, query, order_key=api.account.order_id_metadata_key, asked_at=self.clock())


class EventsFeed(StatusClient):
    """Stripe's /v1/events list, per account: what the reconciler catches up on."""

    async def catch_up(
        self, account: str, cursor: int | None, client: httpx.AsyncClient
    ) -> tuple[list[PaymentEvent], int | None]:
        """Events since `cursor` (unix seconds, minus an overlap) from GET /v1/events, oldest first.

        Returns the events and the next cursor: the newest `created` seen, or `cursor` when nothing
        was listed. Overlap duplicates are absorbed by the events' dedupe keys (the event id).
        """
        return await catch_up(self.api(account, client), cursor, self.clock())
