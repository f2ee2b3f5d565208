"""ZaloPay's query API: `POST /v2/query` → a PaymentEvent, through the code table below.

ZaloPay answers a query with `return_code` (1 paid, 2 failed, 3 not paid yet or in progress)
and, for 2, a `sub_return_code` saying why; negative return codes refuse the query itself
(NOTES.md §4). The table is keyed by (return_code, sub_return_code); `None` as the sub code
is the row for any sub code not listed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import httpx
import msgspec

from payrecon_zalopay import signing
from payrecon_zalopay.account import Account
from payrecon_zalopay.wire import QueryResponse
from providers.base import Clock, PaymentEvent, PaymentStatus, StatusQuery
from providers.errors import GatewayRejectedError, GatewayUnavailableError
from providers.http import RetryPolicy, Sleep, backoff, send_with_retry

NAME = "zalopay"
QUERY_PATH = "/v2/query"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNLISTED_FLAG = "zalopay:{code} is not a documented query return_code; order left unchanged, ask ZaloPay"


class Outcome(StrEnum):
    PAYMENT = "payment"  # the answer says what the payment is
    NOT_FOUND = "not_found"  # ZaloPay does not know the app_trans_id
    RETRY = "retry"  # ZaloPay is busy or down: ask again
    REFUSED = "refused"  # our request is wrong (credentials, mac, parameters): a retry cannot cure it


class Meaning(NamedTuple):
    outcome: Outcome
    status: PaymentStatus | None
    text: str


_P, _S = Outcome.PAYMENT, PaymentStatus
CODES: dict[tuple[int, int | None], Meaning] = {
    (1, None): Meaning(_P, _S.SUCCEEDED, "SUCCESS"),
    # 3: "unpaid order or transaction in progress"; is_processing tells the two apart (see _status).
    (3, None): Meaning(_P, _S.PENDING, "PROCESSING"),
    (2, None): Meaning(_P, _S.FAILED, "FAIL"),
    (2, -54): Meaning(_P, _S.CANCELED, "TIME_INVALID: the order expired unpaid"),
    (2, -329): Meaning(_P, _S.CANCELED, "the user canceled the payment"),
    (2, -322): Meaning(_P, _S.FAILED, "payment code expired; the user was not charged"),
    (2, -101): Meaning(Outcome.NOT_FOUND, None, "order not found"),  # (unconfirmed for /v2/query, NOTES.md §4)
    (2, -401): Meaning(Outcome.REFUSED, None, "ILLEGAL_DATA_REQUEST"),
    (2, -402): Meaning(Outcome.REFUSED, None, "ILLEGAL_APP/SIGNATURE_REQUEST"),
    (2, -429): Meaning(Outcome.RETRY, None, "LIMIT_REQUEST_REACH"),
    (2, -500): Meaning(Outcome.RETRY, None, "SYSTEM_ERROR"),
    (2, -999): Meaning(Outcome.RETRY, None, "SYSTEM_MAINTENANCE"),
    (-401, None): Meaning(Outcome.REFUSED, None, "ILLEGAL_DATA_REQUEST"),
    (-402, None): Meaning(Outcome.REFUSED, None, "ILLEGAL_APP_REQUEST"),
    (-403, None): Meaning(Outcome.REFUSED, None, "ILLEGAL_SIGNATURE_REQUEST"),
    (-405, None): Meaning(Outcome.REFUSED, None, "ILLEGAL_CLIENT_REQUEST"),
    (406, None): Meaning(Outcome.REFUSED, None, "ILLEGAL_STATUS"),
    (-429, None): Meaning(Outcome.RETRY, None, "LIMIT_REQUEST_REACH"),
    (-500, None): Meaning(Outcome.RETRY, None, "SYSTEM_ERROR"),
}
CREDENTIAL_HINT = "; check app_id and key1 of this [[zalopay]] account in PAYRECON_GATEWAYS"


def meaning(return_code: int, sub_return_code: int) -> Meaning | None:
    return CODES.get((return_code, sub_return_code)) or CODES.get((return_code, None))


def query_body(account: Account, app_trans_id: str) -> dict[str, str]:
    """The form fields of a query, mac'd with key1 (NOTES.md §4)."""
    return {
        "app_id": str(account.app_id),
        "app_trans_id": app_trans_id,
        "mac": signing.query_mac(account.key1, account.app_id, app_trans_id),
    }


def _decode(response: httpx.Response) -> tuple[QueryResponse, dict[str, Any]]:
    try:
        payload = msgspec.json.decode(response.content)
        return msgspec.convert(payload, QueryResponse), payload
    except (msgspec.MsgspecError, ValueError) as exc:
        what = f"zalopay query API answered HTTP {response.status_code} without a readable return_code ({exc})"
        if 400 <= response.status_code < 500:
            raise GatewayRejectedError(what) from None
        raise GatewayUnavailableError(what) from None


async def fetch(
    account: Account, query: StatusQuery, client: httpx.AsyncClient, *, policy: RetryPolicy, sleep: Sleep, now: Clock
) -> PaymentEvent | None:
    url = account.api_base.rstrip("/") + QUERY_PATH
    asked = 0  # calls made so far, HTTP retries included: one budget for the whole query
    while True:
        retries = 0

        async def counting_sleep(seconds: float) -> None:
            nonlocal retries
            retries += 1
            await sleep(seconds)

        # HTTP faults (timeouts, 5xx, 429) are retried inside send_with_retry, ZaloPay's in-band
        # "busy" codes here, on the same budget: a flaky ZaloPay costs `attempts` calls at most.
        response = await send_with_retry(
            client,
            "POST",
            url,
            gateway=NAME,
            policy=msgspec.structs.replace(policy, attempts=policy.attempts - asked),
            request_timeout=account.timeout,
            sleep=counting_sleep,
            data=query_body(account, query.reference),
        )
        asked += retries + 1
        answer, payload = _decode(response)
        found = meaning(answer.return_code, answer.sub_return_code)
        if found is None or found.outcome is not Outcome.RETRY:
            return _event(account, query, answer, payload, found, now)
        if asked >= policy.attempts:
            raise GatewayUnavailableError(
                f"zalopay query API: return_code {answer.return_code}/{answer.sub_return_code} "
                f"({answer.return_message}) after {asked} attempt(s)"
            )
        await sleep(backoff(policy, asked))


def _event(
    account: Account,
    query: StatusQuery,
    answer: QueryResponse,
    payload: dict[str, Any],
    found: Meaning | None,
    now: Clock,
) -> PaymentEvent | None:
    codes = f"{answer.return_code}/{answer.sub_return_code}"
    if found is not None and found.outcome is Outcome.NOT_FOUND:
        return None
    if found is not None and found.outcome is Outcome.REFUSED:
        hint = CREDENTIAL_HINT if answer.return_code in (-402, -403) or answer.sub_return_code == -402 else ""
        raise GatewayRejectedError(
            f"zalopay query API refused app_trans_id {query.reference!r} on account {account.account!r}: "
            f"return_code {codes} {found.text} ({answer.return_message or answer.sub_return_message}){hint}"
        )
    flag: str | None = None
    if found is None or found.status is None:
        state, flag = PaymentStatus.PENDING, UNLISTED_FLAG.format(code=codes)
    elif found.status is PaymentStatus.PENDING and answer.is_processing:
        state = PaymentStatus.PROCESSING  # the user is paying right now
    else:
        state = found.status
    if answer.amount < 0:
        raise GatewayRejectedError(f"zalopay query API: negative amount {answer.amount} for {query.reference!r}")
    # Unpaid answers carry amount 0: ZaloPay does not contradict the order's amount then. A paid
    # one must name its amount, so a paid answer without one is an amount mismatch, never a success.
    amount = answer.amount if answer.amount or state is PaymentStatus.SUCCEEDED else query.amount
    payment_id = str(answer.zp_trans_id) if answer.zp_trans_id else None
    text = found.text if found is not None else "unlisted"
    return PaymentEvent(
        provider=NAME,
        dedupe_key=f"zalopay:status:{account.account}:{query.reference}:{codes}:{state}:{payment_id}",
        account=account.account,
        reference=query.reference,
        status=state,
        amount=amount,
        currency="VND",
        provider_payment_id=payment_id,
        occurred_at=now(),
        reason=f"zalopay:{codes} {text}" + (f": {answer.sub_return_message}" if answer.sub_return_message else ""),
        flag=flag,
        payload=payload,
    )


def server_time(milliseconds: int) -> datetime:
    return EPOCH + timedelta(milliseconds=milliseconds)
