"""What the VNPay simulator knows of a transaction: its state, refunds and dates."""

from __future__ import annotations

import msgspec


class SimRefund(msgspec.Struct, kw_only=True):
    transaction_type: str  # 02 full, 03 partial
    amount: int
    transaction_status: str = "00"  # 05/06 in progress, 09 rejected
    create_date: str = ""


class SimTransaction(msgspec.Struct, kw_only=True):
    reference: str  # vnp_TxnRef
    order_id: str
    account: str
    amount: int  # VND
    create_date: str  # the pay URL's vnp_CreateDate, GMT+7
    order_info: str
    response_code: str = ""
    transaction_status: str = "01"
    transaction_no: str = "0"
    pay_date: str = ""
    bank_code: str = "NCB"
    card_type: str = "ATM"
    bank_tran_no: str = ""
    refunds: list[SimRefund] = []

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.transaction_status not in ("09",))
