"""MoMo's status query client: `POST /v2/gateway/api/query` → a PaymentEvent (reference/momo.md §6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from providers.base import Clock, PaymentEvent, PaymentStatus, StatusQuery
from providers.errors import GatewayRejectedError, GatewayUnavailableError
from providers.http import RetryPolicy, Sleep, backoff, send_with_retry
from providers.momo import signing
from providers.momo.account import Account
from providers.momo.wire import RESULT_CODES, UNLISTED_FLAG, CodeKind, QueryRequest, QueryResponse

QUERY_PATH = "/v2/gateway/api/query"
HEADERS = {"Content-Type": "application/json; charset=UTF-8"}
# 40 "Duplicated requestId" can only answer our own resend of a request MoMo already saw
# (send_with_retry repeats the body after a 5xx): asking again with a new requestId is right.
RETRY_CODES = frozenset(code for code, m in RESULT_CODES.items() if m.kind is CodeKind.RETRY) | {40}
CREDENTIAL_HINT = "; check partner_code, access_key and the first of secret_keys in PAYRECON_GATEWAYS"


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
    except (msgspec.MsgspecError, ValueError) as exc:
        what = f"momo status API answered HTTP {response.status_code} without a readable resultCode ({exc})"
        if 400 <= response.status_code < 500:
            raise GatewayRejectedError(what) from None
        raise GatewayUnavailableError(what) from None


async def _ask(
    client: httpx.AsyncClient, url: str, body: bytes, account: Account, policy: RetryPolicy, sleep: Sleep
) -> tuple[httpx.Response, int]:
    """One query through send_with_retry; returns the answer and the attempts it used.

    Retries for HTTP faults (inside send_with_retry) and for MoMo's "busy" codes (here)
    share one budget, so a flaky MoMo costs at most `policy.attempts` calls per order.
    Every sleep between attempts is one retry, hence the count.
    """
    sleeps = 0

    async def counting_sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        await sleep(seconds)

    response = await send_with_retry(
        client,
        "POST",
        url,
        gateway="momo",
        policy=policy,
        request_timeout=account.timeout,
        sleep=counting_sleep,
        content=body,
        headers=HEADERS,
    )
    return response, sleeps + 1


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
    url = account.api_base.rstrip("/") + QUERY_PATH
    budget = policy.attempts
    retries = 0
    while True:
        body = query_body(account, query.reference, request_id())
        response, used = await _ask(client, url, body, account, msgspec.structs.replace(policy, attempts=budget), sleep)
        budget -= used
        answer, payload = _decode(response)
        code = answer.resultCode
        if code not in RETRY_CODES:
            break
        if budget <= 0:
            raise GatewayUnavailableError(
                f"momo status API: resultCode {code} ({answer.message}) after {policy.attempts} attempt(s)"
            )
        retries += 1
        await sleep(backoff(policy, retries))

    meaning = RESULT_CODES.get(code)
    if meaning is not None and meaning.kind is CodeKind.NOT_FOUND:
        return None
    if meaning is not None and meaning.kind is CodeKind.REQUEST:
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
        state, flag = PaymentStatus.PENDING, UNLISTED_FLAG.format(code=code)
    else:
        state, flag = meaning.status, meaning.flag
    refunded = 0
    if state is PaymentStatus.SUCCEEDED:
        refunded = sum(r.amount for r in answer.refundTrans or () if r.resultCode == 0 and r.amount > 0)
        if refunded:
            state = PaymentStatus.REFUNDED if refunded >= answer.amount else PaymentStatus.PARTIALLY_REFUNDED
    payment_id = str(answer.transId) if answer.transId else None
    return PaymentEvent(
        provider="momo",
        dedupe_key=f"momo:status:{account.partner_code}:{query.reference}:{code}:{state}:{payment_id}:{refunded}",
        account=account.account,
        reference=query.reference,
        status=state,
        amount=answer.amount,
        currency="VND",
        provider_payment_id=payment_id,
        refunded_amount=refunded or None,
        occurred_at=now(),
        reason=f"momo:{code} {answer.message}",
        flag=flag,
        payload=payload,
    )


def _sub_errors(payload: dict[str, Any]) -> list[dict[str, Any]]:
    errors = payload.get("subErrors")
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]
