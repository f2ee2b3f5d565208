"""A VNPay stand-in: IPNs built and signed like VNPay's, the querydr/refund API, a /_sim/ control API.

It follows reference/vnpay.md, not our adapter: IPNs are GETs with the sorted, quote_plus
encoded `vnp_*` parameters and vnp_SecureHash last, retried unless the answer's RspCode is
00 or 02; the merchant API checks the pipe-string request hash (97), the terminal (02), the
transaction and its original vnp_CreateDate (91) and signs its answers. VNPay sends no IPN
for refunds (they are API calls with a synchronous answer), so neither does this simulator.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Unpack

import httpx
import msgspec
from litestar.types import ASGIApp

from providers.base import PaymentStatus
from providers.simkit import SimOptions, SimPayment, SimulatorBase
from providers.vnpay.sim.app import build_app
from providers.vnpay.sim.signing import build_pay_url, signed_query_string, vnp_date
from providers.vnpay.sim.state import SimRefund, SimTransaction
from providers.vnpay.sim.wire import FINAL_RSP_CODES, REFUND_CODES
from providers.vnpay.wire import FULL_REFUND, PARTIAL_REFUND, VERSION

# The made-up test credentials of tests/fixtures/vectors.json.
TEST_TMN_CODE = "PRCN2026"
TEST_HASH_SECRET = "PAYRECONSANDBOXHASHSECRET2026XYZ"
WRONG_HASH_SECRET = "SIMULATEDWRONGKEYSIMULATEDWRONGK"
PAY_PAGE = "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
# VNPay calls an IPN URL up to 10 times, 5 minutes apart (§5); compressed here.
VNPAY_RETRY_DELAYS: tuple[float, ...] = (0.02,) * 9

# Our normalized status → the (vnp_ResponseCode, vnp_TransactionStatus) VNPay reports for it.
NATIVE: dict[PaymentStatus, tuple[str, str]] = {
    PaymentStatus.PENDING: ("", "01"),  # customer has not finished: no IPN
    PaymentStatus.SUCCEEDED: ("00", "00"),
    PaymentStatus.FAILED: ("51", "02"),  # insufficient balance
    PaymentStatus.CANCELED: ("24", "02"),  # customer cancelled
    PaymentStatus.PROCESSING: ("07", "07"),  # money taken, held for fraud review
}
_PAID_STATES = frozenset({"00", "04", "07", "10", "20"})  # the bank moved money: VNPay numbers it


def accepts_vnpay(response: httpx.Response) -> bool:
    """VNPay's rule: RspCode 00 or 02 ends the flow; anything else (or no JSON) is retried."""
    try:
        answer = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return False
    return isinstance(answer, dict) and answer.get("RspCode") in FINAL_RSP_CODES


class Simulator(SimulatorBase):
    """VNPay for tests and the demo: an in-memory terminal with its merchant API and IPN sender."""

    name = "vnpay"
    currency = "VND"
    conflict_status = 400  # a refused change is the control request's fault here

    def __init__(
        self,
        *,
        tmn_code: str = TEST_TMN_CODE,
        hash_secret: str = TEST_HASH_SECRET,
        retry_delays: Sequence[float] = VNPAY_RETRY_DELAYS,
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(retry_delays=retry_delays, accepts=accepts_vnpay, **options)
        self.tmn_code = tmn_code
        self.hash_secret = hash_secret
        self.payments: dict[str, SimTransaction] = {}
        self.ipns: list[str] = []  # every IPN query string built, in order (before faults)
        self._transaction_nos = itertools.count(14226112)
        self.request_ids: set[str] = set()

    # --- the SimulatedGateway face -----------------------------------------------------------

    def create_payment(
        self, *, order_id: str, amount: int, currency: str, account: str = "default", reference: str | None = None
    ) -> SimPayment:
        """The customer opened the pay URL: VNPay knows the transaction, not yet paid (status 01)."""
        if currency.upper() != "VND":
            raise ValueError(f"VNPay only takes VND, not {currency!r}")
        if amount <= 0:
            raise ValueError(f"amount must be a positive number of VND, got {amount}")
        reference = reference or order_id
        if reference in self.payments:
            raise ValueError(f"vnp_TxnRef {reference!r} already used; VNPay needs a new one per attempt")
        create_date = vnp_date(self.clock())
        self.payments[reference] = SimTransaction(
            reference=reference,
            order_id=order_id,
            account=account,
            amount=amount,
            create_date=create_date,
            order_info=f"Thanh toan don hang {order_id}",
        )
        return SimPayment(reference=reference, provider_data={"vnp_create_date": create_date})

    def set_status(self, reference: str, status: PaymentStatus) -> None:
        """Move to VNPay's native state for `status` and send the IPN (none for pending)."""
        if status is PaymentStatus.REFUNDED:
            txn = self.transaction(reference)
            self.refund(reference, txn.amount - txn.refunded)
            return
        if status is PaymentStatus.PARTIALLY_REFUNDED:
            txn = self.transaction(reference)
            self.refund(reference, max(1, (txn.amount - txn.refunded) // 2))
            return
        if status not in NATIVE:
            raise ValueError(f"VNPay PAY has no {status} state (no authorize/capture); use another gateway")
        response_code, transaction_status = NATIVE[status]
        self.set_native(reference, response_code, transaction_status)

    def set_native(self, reference: str, response_code: str, transaction_status: str) -> None:
        """Any (vnp_ResponseCode, vnp_TransactionStatus) pair of the reference's tables, then the IPN."""
        txn = self.transaction(reference)
        txn.response_code = response_code
        txn.transaction_status = transaction_status
        if response_code in ("00", "07") or transaction_status in _PAID_STATES:
            if txn.transaction_no == "0":
                txn.transaction_no = str(next(self._transaction_nos))
            txn.bank_tran_no = f"VNP{txn.transaction_no}"
        if response_code:
            txn.pay_date = vnp_date(self.clock())
            self._notify(txn)

    def refund(self, reference: str, amount: int) -> None:
        """A refund through the merchant API/portal. VNPay sends no IPN for it: querydr shows it."""
        code = self.apply_refund(self.transaction(reference), amount, None)
        if code != "00":
            raise ValueError(f"VNPay refuses this refund: {code} {REFUND_CODES[code]}")

    def set_refund_status(self, reference: str, transaction_status: str) -> None:
        """Move the latest refund to 05/06 (in progress), 09 (rejected) or back to 00."""
        txn = self.transaction(reference)
        if not txn.refunds:
            raise ValueError(f"{reference!r} has no refund")
        txn.refunds[-1].transaction_status = transaction_status

    def pay_url(self, reference: str, *, return_url: str = "https://shop.example/vnpay/return") -> str:
        """The signed pay URL a shop would have built for this payment (vector vnpay-12)."""
        txn = self.transaction(reference)
        params = {
            "vnp_Version": VERSION,
            "vnp_Command": "pay",
            "vnp_TmnCode": self.tmn_code,
            "vnp_Amount": str(txn.amount * 100),
            "vnp_CurrCode": "VND",
            "vnp_TxnRef": txn.reference,
            "vnp_OrderInfo": txn.order_info,
            "vnp_OrderType": "other",
            "vnp_Locale": "vn",
            "vnp_ReturnUrl": return_url,
            "vnp_IpAddr": "127.0.0.1",
            "vnp_CreateDate": txn.create_date,
        }
        return build_pay_url(PAY_PAGE, params, self.hash_secret)

    def gateway_config(self, api_base: str) -> dict[str, object]:
        return {
            "account": self.account,
            "tmn_code": self.tmn_code,
            "hash_secrets": [self.hash_secret],
            "api_base": api_base,
        }

    # --- IPN ---------------------------------------------------------------------------------

    def ipn_params(self, txn: SimTransaction) -> dict[str, str]:
        """The IPN's vnp_* parameters for the transaction's current state (VNPay's IPN table, §1)."""
        params = {
            "vnp_Amount": str(txn.amount * 100),
            "vnp_BankCode": txn.bank_code,
            "vnp_CardType": txn.card_type,
            "vnp_OrderInfo": txn.order_info,
            "vnp_PayDate": txn.pay_date,
            "vnp_ResponseCode": txn.response_code,
            "vnp_TmnCode": self.tmn_code,
            "vnp_TransactionNo": txn.transaction_no,
            "vnp_TransactionStatus": txn.transaction_status,
            "vnp_TxnRef": txn.reference,
        }
        if txn.bank_tran_no and txn.response_code == "00":
            params["vnp_BankTranNo"] = txn.bank_tran_no  # absent on failures
        return params

    def _notify(self, txn: SimTransaction) -> None:
        params = self.ipn_params(txn)  # a snapshot: later changes are later IPNs
        self.ipns.append(signed_query_string(params, self.hash_secret))
        url = self.webhook_url
        if url is None:
            return

        def build(wrong_key: bool) -> httpx.Request:
            secret = WRONG_HASH_SECRET if wrong_key else self.hash_secret
            separator = "&" if "?" in url else "?"
            return httpx.Request("GET", f"{url}{separator}{signed_query_string(params, secret)}")

        self.dispatcher.send(build)

    def apply_refund(self, txn: SimTransaction, amount: int, transaction_type: str | None) -> str:
        if (txn.response_code, txn.transaction_status) != ("00", "00"):
            return "95"
        remaining = txn.amount - txn.refunded
        if amount <= 0 or amount > remaining:
            return "93"
        full = amount == txn.amount
        if transaction_type is not None and transaction_type != (FULL_REFUND if full else PARTIAL_REFUND):
            return "93"  # 02 must return the whole payment, 03 less
        txn.refunds.append(
            SimRefund(
                transaction_type=FULL_REFUND if full else PARTIAL_REFUND,
                amount=amount,
                create_date=vnp_date(self.clock()),
            )
        )
        return "00"

    def transaction(self, reference: str) -> SimTransaction:
        try:
            return self.payments[reference]
        except KeyError:
            raise KeyError(f"no VNPay transaction with vnp_TxnRef {reference!r}") from None

    def asgi_app(self) -> ASGIApp:
        """VNPay's merchant API (querydr, refund) and the /_sim/ control API."""

        return build_app(self)

    # --- the control API ---------------------------------------------------------------------

    def view(self, reference: str) -> SimTransaction:
        return self.transaction(reference)

    def references(self) -> Iterable[str]:
        return self.payments
