"""ZaloPay as the simulator holds it: orders by app_trans_id, their query answers, signed callbacks.

Choices where ZaloPay's documentation is silent are marked "(unconfirmed)" (NOTES.md §5):
- the query answer for an app_trans_id ZaloPay never saw: return_code 2, sub_return_code -101;
- unpaid and failed answers carry amount 0 and zp_trans_id 0;
- callback retries: ZaloPay's samples say "at most 3 times" after a non-success answer; the
  delays are ours, compressed for tests;
- refunds send no callback (ZaloPay documents callbacks for payments only) and the order query
  does not list them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Unpack

import httpx
import msgspec
from litestar.types import ASGIApp

from payrecon_zalopay.sim.app import StatusIn, build_app
from payrecon_zalopay.sim.state import APP_TRANS_ID, VIETNAM, Payment, zalopay_mac
from providers.base import PaymentStatus
from providers.simkit import SimOptions, SimPayment, SimulatorBase, post_json

DEFAULT_APP_ID = 2026  # made-up test credentials
DEFAULT_KEY1 = "ZPtestKey1-payrecon-0123456789abc"
DEFAULT_KEY2 = "ZPtestKey2-payrecon-0123456789xyz"
WRONG_KEY2 = "ZPsimulatorWrongKey2-000000000000"
DEFAULT_RETRY_DELAYS = (0.05, 0.2, 0.5)  # "at most 3 times" (unconfirmed delays)
# The native codes set_status picks; set_result takes any pair.
NATIVE: dict[PaymentStatus, tuple[int, int, bool]] = {  # status → (return_code, sub_return_code, is_processing)
    PaymentStatus.PENDING: (3, 0, False),
    PaymentStatus.PROCESSING: (3, 0, True),
    PaymentStatus.SUCCEEDED: (1, 1, False),
    PaymentStatus.FAILED: (2, -322, False),
    PaymentStatus.CANCELED: (2, -54, False),
}


class Simulator(SimulatorBase):
    """ZaloPay as the tests, the benchmarks and `payrecon simulate zalopay` see it."""

    name = "zalopay"
    currency = "VND"
    moves = StatusIn

    def __init__(
        self,
        *,
        app_id: int = DEFAULT_APP_ID,
        key1: str = DEFAULT_KEY1,
        key2: str = DEFAULT_KEY2,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(retry_delays=retry_delays, accepts=accepts, **options)
        self.app_id = app_id
        self.key1 = key1
        self.key2 = key2
        self.payments: dict[str, Payment] = {}
        # ZaloPay's ids start with the yymmdd of the day; the rest counts up.
        self._trans_ids = itertools.count(1)

    # --- the life of a payment -----------------------------------------------------------

    def create_payment(
        self, *, order_id: str, amount: int, currency: str, account: str = "default", reference: str | None = None
    ) -> SimPayment:
        if currency.upper() != "VND":
            raise ValueError(f"ZaloPay takes VND only, not {currency}")
        if amount <= 0:
            raise ValueError(f"-401 amount must be a positive number of VND, not {amount}")
        reference = reference or f"{self.clock().astimezone(VIETNAM):%y%m%d}_{order_id}"
        if not APP_TRANS_ID.match(reference):
            raise ValueError(f"-401 app_trans_id {reference!r} is not yymmdd_xxx of at most 40 characters")
        if reference in self.payments:
            raise ValueError(f"-68 duplicate app_trans_id {reference!r}")
        self.payments[reference] = Payment(
            app_trans_id=reference, amount=amount, app_user="payrecon-demo", app_time=self.now_ms(), account=account
        )
        return SimPayment(reference=reference)

    def get_payment(self, reference: str) -> Payment:
        try:
            return self.payments[reference]
        except KeyError:
            raise KeyError(f"no ZaloPay order with app_trans_id {reference!r}") from None

    def set_status(self, reference: str, status: PaymentStatus) -> None:
        payment = self.get_payment(reference)
        if status in (PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED):
            left = payment.amount - payment.refunded
            self.refund(reference, left if status is PaymentStatus.REFUNDED else max(1, left // 2))
            return
        if status not in NATIVE:
            raise ValueError(f"ZaloPay has no {status.value} state (no separate authorization)")
        self.set_result(reference, *NATIVE[status])

    def set_result(
        self, reference: str, return_code: int, sub_return_code: int = 0, is_processing: bool = False
    ) -> None:
        """Put the order in any state the query API can report; a payment calls back."""
        payment = self.get_payment(reference)
        if payment.return_code == 1 and return_code != 1:
            raise ValueError(f"{reference} is paid; ZaloPay does not move a paid order back")
        payment.return_code, payment.sub_return_code = return_code, sub_return_code
        payment.is_processing = is_processing
        if return_code == 1:
            if not payment.zp_trans_id:
                payment.zp_trans_id = int(f"{self.clock().astimezone(VIETNAM):%y%m%d}{next(self._trans_ids):09d}")
                payment.server_time = self.now_ms()
            self._call_back(payment)  # the same success again is a re-sent callback: a duplicate

    def refund(self, reference: str, amount: int) -> None:
        """Refund through ZaloPay (its /v2/refund); ZaloPay calls back for no refund (unconfirmed)."""
        payment = self.get_payment(reference)
        if payment.return_code != 1:
            raise ValueError(f"{reference} is not paid: nothing to refund")
        if not 0 < amount <= payment.amount - payment.refunded:
            raise ValueError(f"refund of {amount} VND exceeds what is left of {payment.amount} VND")
        payment.refunds.append(amount)

    # --- callbacks -----------------------------------------------------------------------

    def callback_body(self, payment: Payment, *, key: str | None = None) -> bytes:
        """The callback as ZaloPay POSTs it: `data` is the order's JSON as a string, `mac` over that string."""
        data = msgspec.json.encode(
            {
                "app_id": self.app_id,
                "app_trans_id": payment.app_trans_id,
                "app_time": payment.app_time,
                "app_user": payment.app_user,
                "amount": payment.amount,
                "embed_data": "{}",
                "item": "[]",
                "zp_trans_id": payment.zp_trans_id,
                "server_time": payment.server_time,
                "channel": 38,
                "merchant_user_id": "payrecon-sim-user",
                "user_fee_amount": 0,
                "discount_amount": 0,
            }
        ).decode()
        return msgspec.json.encode({"data": data, "mac": zalopay_mac(key or self.key2, data), "type": 1})

    def _call_back(self, payment: Payment) -> None:
        if self.webhook_url is not None:
            forged = self.callback_body(payment, key=WRONG_KEY2)
            self.dispatcher.send(post_json(self.webhook_url, self.callback_body(payment), forged))

    # --- HTTP ----------------------------------------------------------------------------

    def gateway_config(self, api_base: str) -> dict[str, object]:
        return {
            "account": self.account,
            "app_id": self.app_id,
            "key1": self.key1,
            "key2s": [self.key2],
            "api_base": api_base,
        }

    def asgi_app(self) -> ASGIApp:
        """ZaloPay's `/v2/query` and the `/_sim/` control API."""
        return build_app(self)

    # --- the control API -----------------------------------------------------------------

    def view(self, reference: str) -> dict[str, Any]:
        payment = self.get_payment(reference)
        return {**msgspec.to_builtins(payment), "refunded": payment.refunded}

    def references(self) -> Iterable[str]:
        return self.payments

    def move(self, reference: str, order: StatusIn) -> None:
        if order.return_code is not None:
            self.set_result(reference, order.return_code, order.sub_return_code, order.is_processing)
        elif order.status is not None:
            self.set_status(reference, order.status)
        else:
            raise ValueError("give status (a PaymentStatus) or return_code (a ZaloPay return_code)")


def accepts(response: httpx.Response) -> bool:
    """ZaloPay stops calling back on return_code 1 (done) or 2 (done before), read in the JSON body."""
    if response.status_code != 200:
        return False
    try:
        answer = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return False
    return isinstance(answer, dict) and answer.get("return_code") in (1, 2)
