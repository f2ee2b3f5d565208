"""The VNPay adapter: verify and parse IPNs, answer them (reference/vnpay.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import parse_qsl

import msgspec

from providers.acceptance import AmountLimits, OrderRules
from providers.answers import dedupe_key
from providers.base import Ack, OutcomeKind, PaymentEvent, WebhookRequest, index_accounts
from providers.errors import InvalidAmountError, MalformedError, SignatureError, UnknownAccountError
from providers.vnpay.account import Account as VnpayAccount
from providers.vnpay.rules import ipn_verdict
from providers.vnpay.signing import candidate_signing_strings, hmac_sha512, matches, parse_vnp_date, signed_fields
from providers.vnpay.wire import (
    ALREADY_CONFIRMED,
    CONFIRM_SUCCESS,
    INVALID_AMOUNT,
    INVALID_REQUEST,
    INVALID_SIGNATURE,
    ORDER_NOT_FOUND,
    UNKNOWN_ERROR,
    Ipn,
    IpnAnswer,
)

_AMOUNT = re.compile(r"[0-9]{1,18}")
_MAX_FIELDS = 100  # an IPN has about 12

# One answer per IPN, however many outcomes: the one that makes VNPay retry wins (it must
# hear about a problem), then success, then "already confirmed".
_ANSWERS: tuple[tuple[OutcomeKind, IpnAnswer], ...] = (
    (OutcomeKind.AMOUNT_MISMATCH, INVALID_AMOUNT),
    (OutcomeKind.UNKNOWN_ORDER, ORDER_NOT_FOUND),
    (OutcomeKind.APPLIED, CONFIRM_SUCCESS),
    (OutcomeKind.ANOMALY, CONFIRM_SUCCESS),
    (OutcomeKind.IGNORED, CONFIRM_SUCCESS),
    (OutcomeKind.DUPLICATE, ALREADY_CONFIRMED),
    (OutcomeKind.STALE, ALREADY_CONFIRMED),
)


class UnknownTerminalError(UnknownAccountError):
    """The IPN's vnp_TmnCode is no terminal we hold: we have no secret its checksum could match."""


# What VNPay's IPN sample answers (reference/vnpay.md §5): checksum first, with the merchant's
# own secret — an unknown terminal's checksum cannot match any secret we hold, so 97; an amount
# that is not VND × 100 cannot equal the order's, so 04. (A known terminal on the URL of another
# account is our misconfiguration: 99, like any other refusal.)
_REJECTIONS: tuple[tuple[type[Exception], IpnAnswer], ...] = (
    (SignatureError, INVALID_SIGNATURE),
    (UnknownTerminalError, INVALID_SIGNATURE),
    (InvalidAmountError, INVALID_AMOUNT),
)


def _ack(answer: IpnAnswer) -> Ack:
    return Ack(200, msgspec.json.encode(answer), "application/json")


# VNPay takes VND only; its pay page refuses amounts outside 5,000 VND – 1,000,000,000 VND (vnp_Amount is
# Numeric[1,12] after ×100). querydr needs the pay URL's vnp_CreateDate (yyyyMMddHHmmss, GMT+7) later.
ORDER_RULES = OrderRules(
    currencies=frozenset({"VND"}),
    limits={"VND": AmountLimits(5_000, 1_000_000_000)},
    required_provider_data={"vnp_create_date": r"^\d{14}$"},
)


class Adapter:
    """VNPay PAY 2.1.0: IPN GET (or form POST) with vnp_SecureHash, querydr status API."""

    name: ClassVar[str] = "vnpay"

    def __init__(self, accounts: Sequence[VnpayAccount]) -> None:
        self.accounts = index_accounts(self.name, accounts)
        self._by_tmn = index_accounts(self.name, accounts, by="tmn_code")

    # --- IPN -------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        params = self._params(request)
        account = self._account(params, request)
        given = params.get("vnp_SecureHash", "")
        if not given:
            raise SignatureError("the IPN carries no vnp_SecureHash; VNPay signs every IPN")
        candidates = candidate_signing_strings(params)
        for secret in account.hash_secrets:
            for material in candidates:
                if matches(hmac_sha512(secret, material), given):
                    return
        raise SignatureError(
            f"vnp_SecureHash matched none of {len(account.hash_secrets)} hash secret(s) of terminal "
            f"{account.tmn_code} (HMAC-SHA512 over the sorted vnp_* parameters); is PAYRECON_GATEWAYS' "
            "[[vnpay]] hash_secrets current, and is the terminal set to HMAC-SHA512 in the merchant portal?"
        )

    def parse(self, request: WebhookRequest) -> list[PaymentEvent]:
        params = self._params(request)
        account = self._account(params, request)
        try:
            ipn = msgspec.convert(signed_fields(params), Ipn)
        except msgspec.ValidationError as exc:
            raise MalformedError(f"VNPay IPN: {exc}") from exc
        if not _AMOUNT.fullmatch(ipn.vnp_Amount):
            raise MalformedError(f"vnp_Amount must be digits (VND × 100), got {ipn.vnp_Amount!r}")
        minor = int(ipn.vnp_Amount)
        if minor % 100:  # no order's amount: VNPay's sample compares vnp_Amount / 100 and answers 04
            raise InvalidAmountError(f"vnp_Amount {minor} is not a whole number of VND × 100")
        if not ipn.vnp_TxnRef:
            raise MalformedError("vnp_TxnRef is empty; it is the order reference VNPay must echo")
        try:
            occurred_at = parse_vnp_date(ipn.vnp_PayDate) if ipn.vnp_PayDate else None
        except ValueError as exc:
            raise MalformedError(f"vnp_PayDate: {exc}") from exc
        verdict = ipn_verdict(ipn.vnp_ResponseCode, ipn.vnp_TransactionStatus)
        transaction_no = ipn.vnp_TransactionNo
        return [
            PaymentEvent(
                provider=self.name,
                # No event id exists, and TransactionNo is 0 on every unpaid attempt (§3, pitfall 5).
                # TxnRef is unique per terminal only, hence the account in the key (issue 10.2).
                dedupe_key=dedupe_key(
                    self.name,
                    account.account,
                    ipn.vnp_TxnRef,
                    transaction_no,
                    ipn.vnp_ResponseCode,
                    ipn.vnp_TransactionStatus,
                ),
                account=account.account,
                reference=ipn.vnp_TxnRef,
                status=verdict.status,
                amount=minor // 100,
                currency="VND",
                provider_payment_id=None if transaction_no in ("", "0") else transaction_no,
                occurred_at=occurred_at,
                reason=verdict.reason,
                flag=verdict.flag,
                payload={k: v for k, v in params.items() if k.startswith("vnp_")},
            )
        ]

    def acknowledge(self, outcomes: Sequence[OutcomeKind]) -> Ack:
        for kind, answer in _ANSWERS:
            if kind in outcomes:
                return _ack(answer)
        return _ack(CONFIRM_SUCCESS)  # nothing to apply: VNPay must stop sending

    def reject(self, error: Exception) -> Ack:
        return _ack(next((answer for cls, answer in _REJECTIONS if isinstance(error, cls)), INVALID_REQUEST))

    def hold(self, error: Exception) -> Ack:
        """A signed IPN payrecon keeps for review but cannot apply: VNPay's sample answers a bad amount 04
        (its retries are bounded: 10 × 5 min, each folded into the one held row); anything else 00, stop."""
        return _ack(INVALID_AMOUNT) if isinstance(error, InvalidAmountError) else _ack(CONFIRM_SUCCESS)

    def retry_later(self) -> Ack:
        # HTTP 200 on purpose: VNPay reads the JSON, and 99 is one of the codes it retries (§5).
        return _ack(UNKNOWN_ERROR)

    # --- helpers ---------------------------------------------------------------------------

    def _params(self, request: WebhookRequest) -> dict[str, str]:
        """The decoded parameters: the query string, or a form body when a POST carries them."""
        material = request.query_string
        if request.method.upper() == "POST" and "vnp_" not in material and request.body:
            try:
                material = request.body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedError(f"IPN form body is not UTF-8: {exc}") from exc
        try:
            material.encode("utf-8")  # lone surrogates would break hashing later
            pairs = parse_qsl(
                material, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=_MAX_FIELDS
            )
        except ValueError as exc:  # UnicodeError is a ValueError
            raise MalformedError(f"IPN query string is not UTF-8 form encoding: {exc}") from exc
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                raise MalformedError(f"IPN repeats parameter {key!r}; VNPay sends each once")
            params[key] = value
        if not any(key.startswith("vnp_") for key in params):
            raise MalformedError("no vnp_* parameters: expected VNPay's IPN query string (GET ?vnp_Amount=…)")
        return params

    def _account(self, params: dict[str, str], request: WebhookRequest) -> VnpayAccount:
        tmn_code = params.get("vnp_TmnCode")
        if not tmn_code:
            raise MalformedError("the IPN has no vnp_TmnCode; cannot tell which terminal it is for")
        account = self._by_tmn.get(tmn_code)
        if account is None:
            raise UnknownTerminalError(
                f"vnp_TmnCode {tmn_code!r} is not a terminal of any [[vnpay]] account in PAYRECON_GATEWAYS"
            )
        # The URL may name the account too (/webhooks/vnpay/{account} or ?account=): they must agree.
        for named in (request.account, params.get("account")):
            if named is not None and named != account.account:
                raise UnknownAccountError(
                    f"the IPN URL names account {named!r} but vnp_TmnCode {tmn_code!r} belongs to "
                    f"account {account.account!r}; fix the IPN URL registered with VNPay"
                )
        return account
