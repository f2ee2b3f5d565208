"""A MoMo simulator: the query/create/refund API with MoMo's signature checks, and signed IPNs.

It follows reference/momo.md, not our adapter: signature strings are built here from
sorted keys (the adapter uses fixed templates; both are checked against the vectors).
Where MoMo's behaviour is undocumented the choice is marked "(unconfirmed)":
- HTTP status of refusals: 400 with the JSON resultCode (seen for 20 in momo-wallet/payment#39;
  assumed for the other request errors and for 42); payment answers are 200.
- An unknown partnerCode answers 13 "merchant authentication failed".
- IPN retries are not documented (§5): a few retries on non-2xx, on a compressed copy of
  the only schedule MoMo publishes (Business Page events: 30 s, 5 min, 15 min); configurable.
- Refunds send no IPN: MoMo documents none (the refund API answers synchronously, and the
  query API lists refunds in `refundTrans`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Unpack

import msgspec
from litestar.types import ASGIApp

from providers.base import PaymentStatus
from providers.momo.sim.app import StatusIn, build_app
from providers.momo.sim.state import AMOUNT_LIMITS, MESSAGES, ORDER_ID, REFUND_LIMITS, Payment, Refund, sign_sorted
from providers.simkit import SimOptions, SimPayment, SimulatorBase, post_json

DEFAULT_PARTNER_CODE = "MOMOPAYRECON2026"  # made-up test credentials of vectors.json
DEFAULT_ACCESS_KEY = "PRtestAccessKey01"
DEFAULT_SECRET_KEY = "PRtestSecretKey0123456789abcdefXY"
WRONG_SECRET_KEY = "PRsimulatorWrongKey000000000000000"
DEFAULT_RETRY_DELAYS = (0.05, 0.5, 1.5)  # 30 s, 5 min, 15 min compressed 600× (unconfirmed for IPNs)
# MoMo's orderId rule ^[0-9a-zA-Z]([-_.]*[0-9a-zA-Z]+)*$, rewritten without nested
# optional repetition (same language, no catastrophic backtracking on a long bad id).
DEFAULT_CODES = {  # the native code set_status picks; set_result takes any code
    PaymentStatus.PENDING: 8000,
    PaymentStatus.PROCESSING: 7000,
    PaymentStatus.AUTHORIZED: 9000,
    PaymentStatus.SUCCEEDED: 0,
    PaymentStatus.FAILED: 1001,
}
OPEN_CODES = frozenset({1000, 8000, 7000, 7002, 9000})  # not final: the payment may still move


class Simulator(SimulatorBase):
    """MoMo as the tests, the benchmarks and `payrecon simulate momo` see it."""

    name = "momo"
    currency = "VND"
    moves = StatusIn

    def __init__(
        self,
        *,
        partner_code: str = DEFAULT_PARTNER_CODE,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(retry_delays=retry_delays, **options)
        self.partner_code = partner_code
        self.access_key = access_key
        self.secret_key = secret_key
        self.payments: dict[str, Payment] = {}
        self._trans_ids = itertools.count(4_100_000_001)
        self._refund_ids: set[str] = set()

    # --- the life of a payment -----------------------------------------------------------

    def create_payment(
        self, *, order_id: str, amount: int, currency: str, account: str = "default", reference: str | None = None
    ) -> SimPayment:
        reference = reference or order_id
        if currency.upper() != "VND":
            raise ValueError(f"MoMo takes VND only, not {currency}")
        low, high = AMOUNT_LIMITS["captureWallet"]
        if not low <= amount <= high:
            raise ValueError(f"22 amount out of range: captureWallet takes {low}..{high} VND, not {amount}")
        self.add_payment(
            Payment(
                orderId=reference,
                requestId=f"req_{reference}",
                amount=amount,
                orderInfo=f"Thanh toan {order_id}",
                account=account,
            )
        )
        return SimPayment(reference=reference)

    def add_payment(self, payment: Payment) -> None:
        if not ORDER_ID.match(payment.orderId):
            raise ValueError(f"20 orderId {payment.orderId!r} does not match {ORDER_ID.pattern}")
        if payment.orderId in self.payments or payment.orderId in self._refund_ids:
            raise ValueError(f"41 duplicated orderId {payment.orderId!r}")
        payment.responseTime = self.now_ms()
        self.payments[payment.orderId] = payment

    def get_payment(self, reference: str) -> Payment:
        try:
            return self.payments[reference]
        except KeyError:
            raise KeyError(f"no MoMo payment with orderId {reference!r}") from None

    def set_status(self, reference: str, status: PaymentStatus) -> None:
        payment = self.get_payment(reference)
        if status is PaymentStatus.REFUNDED:
            self.refund(reference, payment.amount - payment.refunded)
            return
        if status is PaymentStatus.PARTIALLY_REFUNDED:
            raise ValueError("use refund(reference, amount) for a partial refund")
        if status is PaymentStatus.CANCELED:
            # Cancel after authorisation; an untouched payment link expires; otherwise the user declines.
            code = {9000: 1003, 1000: 1005}.get(payment.resultCode, 1006)
        else:
            code = DEFAULT_CODES[status]
        self.set_result(reference, code)

    def set_result(self, reference: str, result_code: int) -> None:
        """Move the payment to any MoMo resultCode (documented or not) and send the IPN."""
        payment = self.get_payment(reference)
        current = payment.resultCode
        if current not in OPEN_CODES and result_code != current:
            raise ValueError(f"orderId {reference!r} is final at resultCode {current}; MoMo does not change it")
        if current == 9000 and result_code not in (0, 1003, 9000):
            raise ValueError("an authorised (9000) payment is captured (0) or cancelled (1003)")
        payment.resultCode = result_code
        payment.transId = payment.transId or next(self._trans_ids)
        payment.payType = payment.payType or "qr"
        payment.responseTime = self.now_ms()
        self._notify(payment)  # the same final code again is a manual re-send: a duplicate IPN

    def refund(self, reference: str, amount: int) -> None:
        """Refund through MoMo (as its refund API does); MoMo sends no IPN for it."""
        code = self.apply_refund(self.get_payment(reference), amount, f"{reference}-rf{len(self._refund_ids) + 1}")
        if code != 0:
            raise ValueError(f"refund refused: {code} {MESSAGES.get(code, '')}")

    def apply_refund(self, payment: Payment, amount: int, refund_order_id: str, request_id: str = "") -> int:
        if payment.resultCode != 0:
            return 1088
        if refund_order_id in self.payments or refund_order_id in self._refund_ids:
            return 41
        if not REFUND_LIMITS[0] <= amount <= REFUND_LIMITS[1]:
            return 22
        if amount > payment.amount - payment.refunded:
            return 1081
        self._refund_ids.add(refund_order_id)
        payment.refunds.append(
            Refund(
                orderId=refund_order_id,
                requestId=request_id or f"req_{refund_order_id}",
                amount=amount,
                transId=next(self._trans_ids),
                resultCode=0,
                createdTime=self.now_ms(),
            )
        )
        return 0

    # --- IPN -----------------------------------------------------------------------------

    def ipn_body(self, payment: Payment, *, secret: str | None = None) -> bytes:
        """The IPN exactly as MoMo POSTs it (§1): its field order, compact JSON, signature last."""
        fields: dict[str, object] = {
            "partnerCode": self.partner_code,
            "orderId": payment.orderId,
            "requestId": payment.requestId,
            "amount": payment.amount,
            "orderInfo": payment.orderInfo,
            "orderType": "momo_wallet",
            "transId": payment.transId,
            "resultCode": payment.resultCode,
            "message": MESSAGES.get(payment.resultCode, "Unknown error."),
            "payType": payment.payType,
            "responseTime": payment.responseTime,
            "extraData": payment.extraData,
        }
        fields["signature"] = sign_sorted(secret or self.secret_key, {**fields, "accessKey": self.access_key})
        return msgspec.json.encode(fields)

    def _notify(self, payment: Payment) -> None:
        url = payment.ipnUrl or self.webhook_url
        if url is not None:
            self.dispatcher.send(
                post_json(url, self.ipn_body(payment), self.ipn_body(payment, secret=WRONG_SECRET_KEY))
            )

    # --- HTTP ----------------------------------------------------------------------------

    def gateway_config(self, api_base: str) -> dict[str, object]:
        return {
            "account": self.account,
            "partner_code": self.partner_code,
            "access_key": self.access_key,
            "secret_keys": [self.secret_key],
            "api_base": api_base,
        }

    def asgi_app(self) -> ASGIApp:
        """MoMo's API (`/v2/gateway/api/query|create|refund`) and the `/_sim/` control API."""

        return build_app(self)

    # --- the control API -----------------------------------------------------------------

    def view(self, reference: str) -> dict[str, Any]:
        payment = self.get_payment(reference)
        return {**msgspec.to_builtins(payment), "refunded": payment.refunded}

    def references(self) -> Iterable[str]:
        return self.payments

    def move(self, reference: str, order: StatusIn) -> None:
        if order.result_code is not None:
            self.set_result(reference, order.result_code)
        elif order.status is not None:
            self.set_status(reference, order.status)
        else:
            raise ValueError("give status (a PaymentStatus) or result_code (a MoMo resultCode)")
