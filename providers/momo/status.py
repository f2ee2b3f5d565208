"""MoMo's status query client: `POST /v2/gateway/api/query` → a PaymentEvent (reference/momo.md §6)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import msgspec

from providers.answers import status_answer
from providers.base import Clock, PaymentEvent, PaymentStatus, StatusQuery
from providers.codes import CodeOutcome, unlisted
from providers.errors import GatewayRejectedError, GatewayUnavailableError
from providers.http import ApiClient, RetryPolicy, Sleep, send_with_retry
from providers.momo import signing
from providers.momo.account import Account
from providers.momo.wire import RESULT_CODES, QueryRequest, QueryResponse

NAME = "momo"
QUERY_PATH = "/v2/gateway/api/query"
HEADERS = {"Content-Type": "application/json; charset=UTF-8"}
# 40 "Duplicated requestId" can only answer a resend of a request MoMo already saw: asking
# again (with the new requestId every call gets) is right.
RETRY_CODES = frozenset(code for code, m in RESULT_CODES.items() if m.outcome is CodeOutcome.RETRY) | {40}
CREDENTIAL_HINT = "; check partner_code, access_key and the first of secret_keys in PAYRECON_GATEWAYS"


def new_request_id() -> str:
    """MoMo wants a new requestId (at most 50 characters) for every call (§3)."""
    return f"payrecon-{uuid.uuid4().hex}"


class StatusClient(ApiClient[Account]):
    """MoMo's `POST /v2/gateway/api/query` for every configured partner code."""

    gateway = NAME

    def __init__(
        self, accounts: Sequence[Account], *, request_id: Callable[[], str] = new_request_id, **options: Any
    ) -> None:
        super().__init__(accounts, **options)
        self.request_id = request_id

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        return await fetch(
            self.account(query.account),
            query,
            client,
            policy=self.retry,
            sleep=self.sleep,
            request_id=self.request_id,
            now=self.clock,
        )


def query_body(account: Account, order_id: str, request_id: str, lang: str = "en") -> bytes:
    """The exact request body (vector momo-07): fields in MoMo's order, compact JSON, UTF-8."""
    message = signing.raw_string(
        signing.QUERY_FIELDS,
        {
            "accessKey": account.access_key,
            "orderId": order_id,
            "partnerCode": account.partner_code,
            "requestId": request_id,
        },
    )
    request = QueryRequest(
        partnerCode=account.partner_code,
        requestId=request_id,
        orderId=order_id,
        lang=lang,
        signature=signing.sign(account.signing_secret, message),
    )
    return msgspec.json.encode(request)


def _decode(response: httpx.Response) -> tuple[QueryResponse, dict[str, Any]]:
    try:
        payload = msgspec.json.decode(response.content)
        return msgspec.convert(payload, QueryResponse), payload
    except (msgspec.MsgspecError, ValueError, RecursionError) as exc:
        what = f"momo status API answered HTTP {response.status_code} without a readable resultCode ({exc})"
        if 400 <= response.status_code < 500:
            raise GatewayRejectedError(what) from None
        raise GatewayUnavailableError(what) from None


async def fetch(
    account: Account,
    query: StatusQuery,
    client: httpx.AsyncClient,
    *,
    policy: RetryPolicy,
    sleep: Sleep,
    request_id: Callable[[], str],
    now: Clock,
) -> PaymentEvent | None:
    """The query; HTTP faults and MoMo's "busy" codes share one budget of `policy.attempts` calls."""
    response = await send_with_retry(
        client,
        "POST",
        account.api_base.rstrip("/") + QUERY_PATH,
        gateway=NAME,
        policy=policy,
        request_timeout=account.timeout,
        sleep=sleep,
        retry_if=_busy,
        content=lambda: query_body(account, query.reference, request_id()),  # a new requestId per call
        headers=HEADERS,
    )
    answer, payload = _decode(response)
    code = answer.resultCode
    meaning = RESULT_CODES.get(code)
    if meaning is not None and meaning.outcome is CodeOutcome.NOT_FOUND:
        return None
    if meaning is not None and meaning.outcome is CodeOutcome.REJECT:
        sub = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in _sub_errors(payload))
        hint = CREDENTIAL_HINT if code in (11, 13, 20) else ""
        raise GatewayRejectedError(
            f"momo status API refused the query for orderId {query.reference!r} on account {account.account!r}: "
            f"resultCode {code} {answer.message}{f' ({sub})' if sub else ''}{hint}"
        )
    # No response signature is documented for the query API (§6): trust TLS, check the echo.
    if answer.orderId != query.reference or answer.partnerCode != account.partner_code:
        raise GatewayRejectedError(
            f"momo status API answered for partnerCode {answer.partnerCode!r} orderId {answer.orderId!r}, "
            f"but we asked {account.partner_code!r} / {query.reference!r}"
        )
    if answer.amount < 0:
        raise GatewayRejectedError(f"momo status API: negative amount {answer.amount} for orderId {query.reference!r}")

    flag: str | None
    if meaning is None or meaning.status is None:  # unlisted, or a refund result where a payment state belongs
        state, flag = PaymentStatus.PENDING, unlisted(code)
    else:
        state, flag = meaning.status, meaning.flag
    refunded = 0
    if state is PaymentStatus.SUCCEEDED:
        refunded = sum(r.amount for r in answer.refundTrans or () if r.resultCode == 0 and r.amount > 0)
        if refunded:
            state = PaymentStatus.REFUNDED if refunded >= answer.amount else PaymentStatus.PARTIALLY_REFUNDED
    return status_answer(
        NAME,
        query,
        status=state,
        amount=answer.amount,
        currency="VND",
        asked_at=now(),
        provider_payment_id=str(answer.transId) if answer.transId else None,
        refunded_amount=refunded or None,
        reason=f"momo:{code} {answer.message}",
        flag=flag,
        payload=payload,
    )


def _busy(response: httpx.Response) -> str | None:
    """MoMo's in-band "busy, ask again": its resultCode and message, or None."""
    try:
        answer = msgspec.json.decode(response.content, type=QueryResponse)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None  # _decode says what is wrong with it
    return f"resultCode {answer.resultCode} ({answer.message})" if answer.resultCode in RETRY_CODES else None


def _sub_errors(payload: dict[str, Any]) -> list[dict[str, Any]]:
    errors = payload.get("subErrors")
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]
