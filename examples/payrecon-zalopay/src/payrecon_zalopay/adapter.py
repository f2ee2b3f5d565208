"""The ZaloPay adapter: callback verification and parsing, and the `{return_code}` answers ZaloPay reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from payrecon_zalopay import signing, status
from payrecon_zalopay.account import Account
from payrecon_zalopay.wire import Callback, CallbackAnswer, CallbackData, CallbackType
from providers.answers import dedupe_key
from providers.base import Ack, OutcomeKind, PaymentEvent, PaymentStatus, WebhookRequest, index_accounts, lookup_account
from providers.errors import MalformedError, SignatureError, UnknownAccountError

NAME = "zalopay"
# ZaloPay reads our answer's return_code (NOTES.md §3): 1 done, 2 already done before (a
# duplicate), 0 "call back again" (ZaloPay retries, at most 3 times), -1 what ZaloPay's own
# samples answer to a bad mac.
SUCCESS, DUPLICATE, RETRY, REFUSED = 1, 2, 0, -1


def _answer(status_code: int, return_code: int, message: str) -> Ack:
    body = msgspec.json.encode(CallbackAnswer(return_code=return_code, return_message=message))
    return Ack(status_code, body, "application/json")


class Adapter:
    """ZaloPay (v2) callbacks: JSON `{data, mac, type}`, the mac HMAC-SHA256 under key2 over `data`."""

    def __init__(self, accounts: Sequence[Account]) -> None:
        self.accounts = index_accounts(NAME, accounts)
        self.by_app_id = {int(app_id): a for app_id, a in index_accounts(NAME, accounts, by="app_id").items()}

    # --- callbacks -----------------------------------------------------------------------

    def _decode(self, request: WebhookRequest) -> tuple[Callback, dict[str, Any], Account]:
        try:
            callback = msgspec.json.decode(request.body, type=Callback)
            data = msgspec.json.decode(callback.data)  # a JSON document inside a JSON string
        except (msgspec.MsgspecError, ValueError) as exc:  # ValueError: invalid UTF-8
            raise MalformedError(
                f"zalopay callback: expected a JSON object {{data, mac, type}} whose data is a JSON object "
                f"in a string: {exc}"
            ) from None
        app_id = data.get("app_id") if isinstance(data, dict) else None
        if type(app_id) is not int:
            raise MalformedError("zalopay callback: data carries no integer app_id")
        return callback, data, self._account_for(app_id, request.account)

    def _account_for(self, app_id: int, url_account: str | None) -> Account:
        if url_account is not None:
            account = lookup_account(NAME, self.accounts, url_account)
            if account.app_id != app_id:
                raise UnknownAccountError(
                    f"zalopay callback for app_id {app_id} arrived on the URL of account {url_account!r}, "
                    f"whose app_id is {account.app_id}"
                )
            return account
        found = self.by_app_id.get(app_id)
        if found is None:
            raise UnknownAccountError(
                f"zalopay callback for app_id {app_id}, which no [[zalopay]] account in PAYRECON_GATEWAYS holds"
            )
        return found

    def verify(self, request: WebhookRequest) -> None:
        callback, _data, account = self._decode(request)
        if not any(signing.matches(key, callback.data, callback.mac) for key in account.key2s):
            raise SignatureError(
                f"zalopay callback mac matched none of {len(account.key2s)} key2(s) of account {account.account!r} "
                f"(app_id {account.app_id}); is key2s in PAYRECON_GATEWAYS the app's current callback key "
                "(key2, not key1), and was the body changed on the way?"
            )

    def parse(self, request: WebhookRequest) -> list[PaymentEvent]:
        callback, data, account = self._decode(request)
        if callback.type != CallbackType.ORDER:
            return []  # agreement (binding) callbacks move no money of an order
        try:
            paid = msgspec.convert(data, CallbackData)
        except msgspec.ValidationError as exc:
            raise MalformedError(f"zalopay callback: data is not an order callback: {exc}") from None
        if paid.amount <= 0:
            raise MalformedError(f"zalopay callback: amount must be a positive number of VND, got {paid.amount}")
        try:
            occurred_at = status.server_time(paid.server_time)
        except OverflowError:
            raise MalformedError(f"zalopay callback: server_time {paid.server_time} is not epoch ms") from None
        return [
            PaymentEvent(
                provider=NAME,
                # ZaloPay calls back only for a payment it has the money of (§2): one event per transaction.
                dedupe_key=dedupe_key(NAME, account.account, paid.zp_trans_id),
                account=account.account,
                reference=paid.app_trans_id,
                status=PaymentStatus.SUCCEEDED,
                amount=paid.amount,
                currency="VND",
                provider_payment_id=str(paid.zp_trans_id),
                occurred_at=occurred_at,
                reason="zalopay:callback paid",
                payload={"type": callback.type, "data": data},
            )
        ]

    # --- answers to ZaloPay ------------------------------------------------------------------

    def acknowledge(self, outcomes: Sequence[OutcomeKind]) -> Ack:
        # Every outcome is durably recorded by now (an unknown order's event waits in quarantine),
        # so ZaloPay is told to stop; 2 tells it the callback was already taken.
        if outcomes and all(kind is OutcomeKind.DUPLICATE for kind in outcomes):
            return _answer(200, DUPLICATE, "already processed")
        return _answer(200, SUCCESS, "success")

    def reject(self, error: Exception) -> Ack:
        # Only the kind of failure goes back; the details (account names) are for our logs.
        message = "mac not equal" if isinstance(error, SignatureError) else "unreadable callback"
        return _answer(400, REFUSED, message)

    def retry_later(self) -> Ack:
        # Both signals say "again": a non-2xx status and ZaloPay's in-band 0.
        return _answer(503, RETRY, "retry later")
