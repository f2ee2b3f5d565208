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

import hashlib
import hmac
import itertools
import random
import re
from collections.abc import Sequence
from datetime import timedelta, timezone

import httpx
import msgspec
from litestar.types import ASGIApp

from providers.base import Clock, PaymentStatus, utcnow
from providers.simkit import Faults, SimPayment, WebhookDispatcher

DEFAULT_APP_ID = 2026  # made-up test credentials
DEFAULT_KEY1 = "ZPtestKey1-payrecon-0123456789abc"
DEFAULT_KEY2 = "ZPtestKey2-payrecon-0123456789xyz"
WRONG_KEY2 = "ZPsimulatorWrongKey2-000000000000"
DEFAULT_RETRY_DELAYS = (0.05, 0.2, 0.5)  # "at most 3 times" (unconfirmed delays)
VIETNAM = timezone(timedelta(hours=7))  # app_trans_id's yymmdd is Vietnam's date
APP_TRANS_ID = re.compile(r"^\d{6}_[0-9A-Za-z_.-]{1,33}$")  # yymmdd_xxx, 40 characters at most

MESSAGES = {
    1: "Giao dịch thành công",
    2: "Giao dịch thất bại",
    3: "Giao dịch chưa thực hiện hoặc đang xử lý",
}
SUB_MESSAGES = {
    -54: "Giao dịch đã hết hạn",
    -101: "Không tìm thấy đơn hàng",
    -322: "Payment Code hết hạn, giao dịch thất bại, tài khoản chưa bị trừ tiền",
    -329: "User huỷ giao dịch thanh toán",
    -401: "Dữ liệu yêu cầu không hợp lệ",
    -402: "Chữ ký không hợp lệ",
}
# The native codes set_status picks; set_result takes any pair.
NATIVE: dict[PaymentStatus, tuple[int, int, bool]] = {  # status → (return_code, sub_return_code, is_processing)
    PaymentStatus.PENDING: (3, 0, False),
    PaymentStatus.PROCESSING: (3, 0, True),
    PaymentStatus.SUCCEEDED: (1, 1, False),
    PaymentStatus.FAILED: (2, -322, False),
    PaymentStatus.CANCELED: (2, -54, False),
}


def zalopay_mac(key: str, message: str) -> str:
    """HMAC-SHA256 of the message under the key, lower-case hex (ZaloPay's "secure data transmission")."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


class Payment(msgspec.Struct, kw_only=True):
    """One ZaloPay order (an app_trans_id) as ZaloPay holds it."""

    app_trans_id: str
    amount: int
    app_user: str
    app_time: int
    account: str = "default"
    return_code: int = 3
    sub_return_code: int = 0
    is_processing: bool = False
    zp_trans_id: int = 0
    server_time: int = 0
    refunds: list[int] = []


class Simulator:
    """ZaloPay as the tests, the benchmarks and `payrecon simulate zalopay` see it."""

    name = "zalopay"

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        faults: Faults | None = None,
        client: httpx.AsyncClient | None = None,
        account: str = "default",
        app_id: int = DEFAULT_APP_ID,
        key1: str = DEFAULT_KEY1,
        key2: str = DEFAULT_KEY2,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        clock: Clock = utcnow,
    ) -> None:
        self.webhook_url = webhook_url
        self.faults = faults or Faults()
        self.dispatcher = WebhookDispatcher(self.faults, retry_delays=retry_delays, accepts=accepts, client=client)
        self.rng = random.Random(self.faults.seed)  # noqa: S311 - simulation, not security
        self.account = account
        self.app_id = app_id
        self.key1 = key1
        self.key2 = key2
        self.clock = clock
        self.payments: dict[str, Payment] = {}
        # ZaloPay's ids start with the yymmdd of the day; the rest counts up.
        self._trans_ids = itertools.count(1)

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

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

    def replace_faults(self, faults: Faults) -> None:
        """New fault knobs for the API and the callbacks; a seed restarts both random streams."""
        self.faults = self.dispatcher.faults = faults
        self.rng = random.Random(faults.seed)  # noqa: S311
        self.dispatcher.rng = random.Random(faults.seed)  # noqa: S311

    def set_status(self, reference: str, status: PaymentStatus) -> None:
        payment = self.get_payment(reference)
        if status in (PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED):
            left = payment.amount - sum(payment.refunds)
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
        if not 0 < amount <= payment.amount - sum(payment.refunds):
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
        if self.webhook_url is None:
            return
        url, good, bad = self.webhook_url, self.callback_body(payment), self.callback_body(payment, key=WRONG_KEY2)

        def build(wrong_key: bool) -> httpx.Request:
            body = bad if wrong_key else good
            return httpx.Request("POST", url, content=body, headers={"Content-Type": "application/json"})

        self.dispatcher.send(build)

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
        from payrecon_zalopay.sim.http import build_app

        return build_app(self)


def accepts(response: httpx.Response) -> bool:
    """ZaloPay stops calling back on return_code 1 (done) or 2 (done before), read in the JSON body."""
    if response.status_code != 200:
        return False
    try:
        answer = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return False
    return isinstance(answer, dict) and answer.get("return_code") in (1, 2)
