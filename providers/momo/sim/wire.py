"""MoMo requests only the simulator reads: payment creation and refunds (reference/momo.md §3)."""

from __future__ import annotations

import msgspec

from providers.momo.wire import Long


class CreateRequest(msgspec.Struct, kw_only=True):
    """`POST /v2/gateway/api/create` (captureWallet and friends); signed as vector momo-09."""

    partnerCode: str
    requestId: str
    amount: Long
    orderId: str
    orderInfo: str
    redirectUrl: str
    ipnUrl: str
    requestType: str
    extraData: str = ""
    lang: str = "vi"
    autoCapture: bool = True  # false: two-step payment, authorised (9000) until confirmed
    signature: str


class RefundRequest(msgspec.Struct, kw_only=True):
    """`POST /v2/gateway/api/refund`; `orderId` is a new id for the refund (vector momo-08)."""

    partnerCode: str
    orderId: str
    requestId: str
    amount: Long
    transId: Long  # the original payment's
    lang: str = "vi"
    description: str = ""
    signature: str
