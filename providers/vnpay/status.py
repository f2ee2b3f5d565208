"""The querydr client: ask VNPay's merchant API for a payment's state (reference/vnpay.md §6)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import httpx
import msgspec

from providers.answers import status_answer
from providers.base import Clock, PaymentEvent, StatusQuery
from providers.codes import CodeOutcome
from providers.errors import GatewayRejectedError
from providers.http import ApiClient, RetryPolicy, Sleep, send_with_retry
from providers.vnpay.account import Account
from providers.vnpay.rules import querydr_verdict
from providers.vnpay.signing import format_vnp_date, hmac_sha512, matches, pipe_string, sign_pipe
from providers.vnpay.wire import API_PATH, PAYMENT, QUERYDR_CODES, VERSION, ApiResponse, QueryDrRequest, text

NAME = "vnpay"
_VNP_DATE = re.compile(r"[0-9]{14}")
_AMOUNT = re.compile(r"[0-9]{1,18}")
_decode_response = msgspec.json.Decoder(ApiResponse)


class StatusClient(ApiClient[Account]):
    """VNPay's querydr for every configured terminal."""

    gateway = NAME

    async def fetch_status(self, query: StatusQuery, client: httpx.AsyncClient) -> PaymentEvent | None:
        account = self.account(query.account)
        return await fetch_status(account, query, client, clock=self.clock, policy=self.retry, sleep=self.sleep)


def build_querydr(account: Account, query: StatusQuery, *, request_id: str, create_date: str) -> QueryDrRequest:
    """The signed querydr body; `vnp_TransactionDate` is the pay URL's vnp_CreateDate (§3, pitfall 9)."""
    transaction_date = query.provider_data.get("vnp_create_date")
    if not isinstance(transaction_date, str) or not _VNP_DATE.fullmatch(transaction_date):
        raise GatewayRejectedError(
            f"vnpay querydr needs the pay URL's vnp_CreateDate (yyyyMMddHHmmss, GMT+7) as "
            f"provider_data.vnp_create_date of reference {query.reference!r}, got {transaction_date!r}; "
            "register the order (or its reference) with it"
        )
    unsigned = QueryDrRequest(
        vnp_RequestId=request_id,
        vnp_Version=VERSION,
        vnp_Command="querydr",
        vnp_TmnCode=account.tmn_code,
        vnp_TxnRef=query.reference,
        vnp_OrderInfo=f"Truy van GD {query.reference}",
        vnp_TransactionDate=transaction_date,
        vnp_CreateDate=create_date,
        vnp_IpAddr=account.server_ip,
    )
    return msgspec.structs.replace(unsigned, vnp_SecureHash=sign_pipe(unsigned.signed_values(), account.signing_secret))


async def fetch_status(
    account: Account,
    query: StatusQuery,
    client: httpx.AsyncClient,
    *,
    clock: Clock,
    policy: RetryPolicy,
    sleep: Sleep,
) -> PaymentEvent | None:
    """querydr; HTTP faults and VNPay's own "try again" codes (94, 99, 08) share one retry budget."""

    def body() -> bytes:
        # A fresh RequestId every call: VNPay answers 94 to a repeated one (§6).
        request = build_querydr(account, query, request_id=uuid.uuid4().hex, create_date=format_vnp_date(clock()))
        return msgspec.json.encode(request)

    response = await send_with_retry(
        client,
        "POST",
        f"{account.api_base.rstrip('/')}{API_PATH}",
        gateway=NAME,
        policy=policy,
        request_timeout=account.timeout,
        sleep=sleep,
        retry_if=_busy,
        content=body,
        headers={"content-type": "application/json"},
    )
    answer = _read(response)
    code = text(answer.vnp_ResponseCode)
    known = QUERYDR_CODES.get(code)
    if known is None or known.outcome is CodeOutcome.REJECT:
        hint = " (is hash_secrets[0] the terminal's current secret?)" if code == "97" else ""
        what = known.text if known else "unlisted response code"
        raise GatewayRejectedError(f"vnpay querydr refused: {code} {what}: {answer.vnp_Message!r}{hint}")
    if answer.vnp_SecureHash or known.outcome is CodeOutcome.PAYMENT:
        _check_signature(account, answer)
    if known.outcome is CodeOutcome.NOT_FOUND:
        return None
    return _event(account, query, answer, asked_at=clock())


def _busy(response: httpx.Response) -> str | None:
    """querydr's in-band "try again": its code and text, or None."""
    if response.status_code != 200:
        return None
    try:
        code = text(_decode_response.decode(response.content).vnp_ResponseCode)
    except msgspec.DecodeError:
        return None  # _read says what is wrong with it
    known = QUERYDR_CODES.get(code)
    return f"querydr {code} {known.text}" if known is not None and known.outcome is CodeOutcome.RETRY else None


def _read(response: httpx.Response) -> ApiResponse:
    if response.status_code != 200:
        raise GatewayRejectedError(
            f"vnpay querydr: HTTP {response.status_code} from {response.request.url}: {response.text[:200]!r}"
        )
    try:
        return _decode_response.decode(response.content)
    except msgspec.DecodeError as exc:
        raise GatewayRejectedError(f"vnpay querydr: unreadable answer ({exc}): {response.text[:200]!r}") from exc


def _check_signature(account: Account, answer: ApiResponse) -> None:
    """The 15-field response hash (vector vnpay-09). A mismatch is rejected, not logged (§6)."""
    material = pipe_string(answer.querydr_signed_values())
    if not any(matches(hmac_sha512(secret, material), answer.vnp_SecureHash) for secret in account.hash_secrets):
        raise GatewayRejectedError(
            f"vnpay querydr answer's vnp_SecureHash matches none of {len(account.hash_secrets)} hash secret(s) "
            f"of terminal {account.tmn_code}; refusing an unauthenticated status"
        )


def _event(account: Account, query: StatusQuery, answer: ApiResponse, *, asked_at: datetime) -> PaymentEvent:
    if answer.vnp_TxnRef != query.reference or answer.vnp_TmnCode != account.tmn_code:
        raise GatewayRejectedError(
            f"vnpay querydr answered for TxnRef {answer.vnp_TxnRef!r} / TmnCode {answer.vnp_TmnCode!r}, "
            f"asked for {query.reference!r} / {account.tmn_code!r}"
        )
    raw_amount = text(answer.vnp_Amount)
    if not _AMOUNT.fullmatch(raw_amount) or int(raw_amount) % 100:
        raise GatewayRejectedError(f"vnpay querydr: vnp_Amount {raw_amount!r} is not VND × 100")
    vnp_amount = int(raw_amount) // 100
    tt = text(answer.vnp_TransactionType) or PAYMENT
    verdict = querydr_verdict(tt, text(answer.vnp_TransactionStatus), vnp_amount, query.amount)
    transaction_no = text(answer.vnp_TransactionNo)
    return status_answer(
        NAME,
        query,
        status=verdict.status,
        amount=vnp_amount if verdict.amount is None else verdict.amount,
        currency="VND",
        asked_at=asked_at,
        provider_payment_id=None if transaction_no in ("", "0") else transaction_no,
        refunded_amount=verdict.refunded_amount,
        reason=verdict.reason,
        flag=verdict.flag,
        payload=msgspec.to_builtins(answer),
    )
