"""ZaloPay's query API: `POST /v2/query` → a PaymentEvent, through the code table below.

ZaloPay answers a query with `return_code` (1 paid, 2 failed, 3 not paid yet or in progress)
and, for 2, a `sub_return_code` saying why; negative return codes refuse the query itself
(NOTES.md §4). The table is keyed by (return_code, sub_return_code); `None` as the sub code
is the row for any sub code not listed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec

from payrecon_zalopay import signing
from payrecon_zalopay.account import Account
from payrecon_zalopay.wire import QueryResponse
from providers.answers import status_answer
from providers.base import PaymentEvent, PaymentStatus, StatusQuery
from providers.codes import Code, CodeOutcome, unlisted
from providers.errors import GatewayRejectedError, GatewayUnavailableError
from providers.http import ApiClient, send_with_retry

NAME = "zalopay"
QUERY_PATH = "/v2/query"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CREDENTIAL_HINT = "; check app_id and key1 of this [[zalopay]] account in PAYRECON_GATEWAYS"

_P, _S = CodeOutcome.PAYMENT, PaymentStatus
CODES: dict[tuple[int, int | None], Code] = {
    (1, None): Code(_P, _S.SUCCEEDED, "SUCCESS"),
    # 3: "unpaid order or transaction in progress"; is_processing tells the two apart (§4).
    (3, None): Code(_P, _S.PENDING, "PROCESSING", final=False),
    (2, None): Code(_P, _S.FAILED, "FAIL"),
    (2, -54): Code(_P, _S.CANCELED, "TIME_INVALID: the order expired unpaid"),
    (2, -329): Code(_P, _S.CANCELED, "the user canceled the payment"),
    (2, -322): Code(_P, _S.FAILED, "payment code expired; the user was not charged"),
    (2, -101): Code(CodeOutcome.NOT_FOUND, text="order not found"),  # (unconfirmed for /v2/query, §4)
    (2, -401): Code(CodeOutcome.REJECT, text="ILLEGAL_DATA_REQUEST"),
    (2, -402): Code(CodeOutcome.REJECT, text="ILLEGAL_APP/SIGNATURE_REQUEST"),
    (2, -429): Code(CodeOutcome.RETRY, text="LIMIT_REQUEST_REACH"),
    (2, -500): Code(CodeOutcome.RETRY, text="SYSTEM_ERROR"),
    (2, -999): Code(CodeOutcome.RETRY, text="SYSTEM_MAINTENANCE"),
    (-401, None): Code(CodeOutcome.REJECT, text="ILLEGAL_DATA_REQUEST"),
    (-402, None): Code(CodeOutcome.REJECT, text="ILLEGAL_APP_REQUEST"),
    (-403, None): Code(CodeOutcome.REJECT, text="ILLEGAL_SIGNATURE_REQUEST"),
    (-405, None): Code(CodeOutcome.REJECT, text="ILLEGAL_CLIENT_REQUEST"),
    (406, None): Code(CodeOutcome.REJECT, text="ILLEGAL_STATUS"),
    (-429, None): Code(CodeOutcome.RETRY, text="LIMIT_REQUEST_REACH"),
    (-500, None): Code(CodeOutcome.RETRY, text="SYSTEM_ERROR"),
}


def meaning(return_code: int, sub_return_code: int) -> Code | None:
    return CODES.get((return_code, sub_return_code)) or CODES.get((return_code, None))


class StatusClient(ApiClient[Account]):
    """ZaloPay's `POST /v2/query` for every configured app."""

    gateway = NAME

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        account = self.account(query.account)
        # HTTP faults and ZaloPay's in-band "busy" codes share one budget of `retry.attempts` calls.
        response = await send_with_retry(
            client,
            "POST",
            account.api_base.rstrip("/") + QUERY_PATH,
            gateway=NAME,
            policy=self.retry,
            request_timeout=account.timeout,
            sleep=self.sleep,
            retry_if=_busy,
            data=query_body(account, query.reference),
        )
        answer, payload = _decode(response)
        found = meaning(answer.return_code, answer.sub_return_code)
        codes = f"{answer.return_code}/{answer.sub_return_code}"
        if found is not None and found.outcome is CodeOutcome.NOT_FOUND:
            return None
        if found is not None and found.outcome is not CodeOutcome.PAYMENT:  # REJECT (RETRY never gets here)
            hint = CREDENTIAL_HINT if answer.return_code in (-402, -403) or answer.sub_return_code == -402 else ""
            raise GatewayRejectedError(
                f"zalopay query API refused app_trans_id {query.reference!r} on account {account.account!r}: "
                f"return_code {codes} {found.text} ({answer.return_message or answer.sub_return_message}){hint}"
            )
        flag: str | None = None
        if found is None or found.status is None:
            state, flag = PaymentStatus.PENDING, unlisted(codes)
        elif found.status is PaymentStatus.PENDING and answer.is_processing:
            state = PaymentStatus.PROCESSING  # the user is paying right now
        else:
            state = found.status
        if answer.amount < 0:
            raise GatewayRejectedError(f"zalopay query API: negative amount {answer.amount} for {query.reference!r}")
        # Unpaid answers carry amount 0: ZaloPay does not contradict the order's amount then. A paid
        # one must name its amount, so a paid answer without one is an amount mismatch, never a success.
        amount = answer.amount if answer.amount or state is PaymentStatus.SUCCEEDED else query.amount
        text = found.text if found is not None else "unlisted"
        return status_answer(
            NAME,
            query,
            status=state,
            amount=amount,
            currency="VND",
            asked_at=self.clock(),
            provider_payment_id=str(answer.zp_trans_id) if answer.zp_trans_id else None,
            reason=f"zalopay:{codes} {text}" + (f": {answer.sub_return_message}" if answer.sub_return_message else ""),
            flag=flag,
            payload=payload,
        )


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
    except (msgspec.MsgspecError, ValueError, RecursionError) as exc:
        what = f"zalopay query API answered HTTP {response.status_code} without a readable return_code ({exc})"
        if 400 <= response.status_code < 500:
            raise GatewayRejectedError(what) from None
        raise GatewayUnavailableError(what) from None


def _busy(response: httpx.Response) -> str | None:
    """ZaloPay's in-band "ask again" (rate limit, system error, maintenance), for send_with_retry."""
    try:
        answer = msgspec.json.decode(response.content, type=QueryResponse)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None  # unreadable: _decode says so
    found = meaning(answer.return_code, answer.sub_return_code)
    if found is None or found.outcome is not CodeOutcome.RETRY:
        return None
    return f"return_code {answer.return_code}/{answer.sub_return_code} {found.text}"


def server_time(milliseconds: int) -> datetime:
    return EPOCH + timedelta(milliseconds=milliseconds)
