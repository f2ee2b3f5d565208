"""MoMo's wire formats (AIO v2 endpoints, "v3" docs) and its resultCode table, as data.

Field names are MoMo's own (camelCase). Numbers MoMo sends as JSON integers are `int`
fields, so a float such as `150000.0` is refused at decode time instead of changing the
signed string (reference/momo.md §8.2). Gateway payloads never forbid unknown fields:
MoMo may add some, and the signature covers only the listed ones.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, NamedTuple

import msgspec

from providers.base import PaymentStatus

# MoMo documents amount, transId and responseTime as Java `Long`.
Long = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Code = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]


class Ipn(msgspec.Struct, kw_only=True):
    """The IPN MoMo POSTs to the create request's `ipnUrl` (reference §1), in MoMo's field order."""

    partnerCode: str
    orderId: str
    requestId: str
    amount: Long
    orderInfo: str
    orderType: str
    transId: Long
    resultCode: Code
    message: str
    payType: str
    responseTime: Long
    extraData: str | None = None  # missing or null counts as "" in the signed string (§8.1)
    signature: str


class QueryRequest(msgspec.Struct, kw_only=True):
    """`POST /v2/gateway/api/query`; field order is the one of vector momo-07."""

    partnerCode: str
    requestId: str
    orderId: str
    lang: str
    signature: str


class RefundTrans(msgspec.Struct, kw_only=True):
    """One refund of a payment, as listed in a query answer."""

    orderId: str  # the refund's own id, not the payment's
    amount: Long
    resultCode: Code
    transId: Long = 0
    createdTime: Long = 0


class QueryResponse(msgspec.Struct, kw_only=True):
    """The query answer (§6). Error answers carry only some fields, hence the defaults."""

    resultCode: Code
    message: str = ""
    partnerCode: str = ""
    requestId: str = ""
    orderId: str = ""
    extraData: str | None = None
    amount: Long = 0
    transId: Long = 0  # the Java SDK defaults a missing one to 0
    payType: str | None = None
    responseTime: Long = 0
    refundTrans: list[RefundTrans] | None = None
    paymentOption: str | None = None


class SubError(msgspec.Struct, kw_only=True):
    field: str
    message: str


class ErrorResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """MoMo's answer to a request it refuses, e.g. a bad signature (momo-wallet/payment#39)."""

    responseTime: int
    message: str
    resultCode: int
    subErrors: list[SubError] = []


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


class CreateResponse(msgspec.Struct, kw_only=True):
    partnerCode: str
    orderId: str
    requestId: str
    amount: int
    responseTime: int
    message: str
    resultCode: int
    payUrl: str = ""
    deeplink: str = ""
    qrCodeUrl: str = ""


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


class RefundResponse(msgspec.Struct, kw_only=True):
    partnerCode: str
    orderId: str
    requestId: str
    amount: int
    transId: int
    resultCode: int
    message: str
    responseTime: int


class CodeKind(StrEnum):
    """What a resultCode is about."""

    PAYMENT = "payment"  # the payment's state: maps to a PaymentStatus
    REFUND = "refund"  # the result of a refund request: says nothing new about the payment
    REQUEST = "request"  # MoMo refused our request as made: fix it, do not repeat it as is
    RETRY = "retry"  # MoMo is busy or in maintenance: ask again later
    NOT_FOUND = "not_found"  # MoMo does not know the orderId


class Meaning(NamedTuple):
    kind: CodeKind
    status: PaymentStatus | None = None
    flag: str | None = None  # ops must look, whatever the ledger does with the status
    final: bool = True  # MoMo's "Final Status" column


_P, _RF, _RQ, _RT = CodeKind.PAYMENT, CodeKind.REFUND, CodeKind.REQUEST, CodeKind.RETRY
_S = PaymentStatus

# Every documented resultCode (reference/momo.md §4), with MoMo's wording as the comment.
RESULT_CODES: dict[int, Meaning] = {
    0: Meaning(_P, _S.SUCCEEDED),  # Successful.
    9000: Meaning(_P, _S.AUTHORIZED, final=False),  # Transaction is authorized successfully (capture or cancel next)
    8000: Meaning(_P, _S.PENDING, final=False),  # Waiting for the user to re-confirm
    1000: Meaning(_P, _S.PENDING, final=False),  # Initiated, waiting for the user to confirm
    7000: Meaning(_P, _S.PROCESSING, final=False),  # Transaction is being processed
    7002: Meaning(_P, _S.PROCESSING, final=False),  # Being processed by the payment-instrument provider
    1001: Meaning(_P, _S.FAILED),  # Insufficient funds
    1002: Meaning(_P, _S.FAILED),  # Rejected by the issuer of the payment method
    1003: Meaning(_P, _S.CANCELED),  # Cancelled after authorisation (merchant cancel or MoMo timeout)
    1004: Meaning(_P, _S.FAILED),  # Over the daily/monthly payment limit
    1005: Meaning(_P, _S.CANCELED),  # Payment URL or QR code expired
    1006: Meaning(_P, _S.CANCELED),  # User declined to confirm the payment
    1007: Meaning(_P, _S.FAILED),  # Wallet inactive or does not exist
    1017: Meaning(_P, _S.CANCELED),  # Cancelled by the merchant
    1026: Meaning(_P, _S.FAILED),  # Restricted by promotion rules
    4001: Meaning(_P, _S.FAILED),  # Account restricted (incomplete KYC)
    4002: Meaning(_P, _S.FAILED),  # Account not verified with C06 (biometric ID)
    4100: Meaning(_P, _S.FAILED),  # User failed to log in
    98: Meaning(_P, _S.FAILED),  # QR code could not be generated
    99: Meaning(_P, _S.FAILED, flag="momo:99 unknown error at MoMo; confirm the payment with MoMo"),  # Unknown error
    1080: Meaning(_RF),  # Refund failed while processing; retry later
    1081: Meaning(_RF),  # Refund rejected: already refunded or exceeds the refundable amount
    1088: Meaning(_RF),  # Refund rejected: the payment is not refundable
    2019: Meaning(_RQ),  # Invalid orderGroupId
    10: Meaning(_RT, final=False),  # System is under maintenance
    11: Meaning(_RQ, final=False),  # Access denied
    12: Meaning(_RQ, final=False),  # API version not supported
    13: Meaning(_RQ, final=False),  # Merchant authentication failed (bad signature or keys)
    20: Meaning(_RQ, final=False),  # Bad format request (incl. wrong signature, see subErrors)
    21: Meaning(_RQ, final=False),  # Invalid amount
    22: Meaning(_RQ, final=False),  # Amount out of range
    40: Meaning(_RQ, final=False),  # Duplicated requestId
    41: Meaning(_RQ, final=False),  # Duplicated orderId
    42: Meaning(CodeKind.NOT_FOUND, final=False),  # Invalid orderId or orderId not found
    43: Meaning(_RT, final=False),  # A similar transaction is being processed
    45: Meaning(_RQ, final=False),  # Duplicated itemId
    47: Meaning(_RQ, final=False),  # Inapplicable information in the given data set
}

# Not in the table: leave the order unchanged (a `pending` event never moves one) and make ops look.
UNLISTED_FLAG = "momo:{code} is not a documented resultCode; order left unchanged, ask MoMo what it means"
