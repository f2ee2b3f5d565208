"""MoMo's wire formats (AIO v2 endpoints, "v3" docs) and its resultCode table, as data.

Field names are MoMo's own (camelCase). Numbers MoMo sends as JSON integers are `int`
fields, so a float such as `150000.0` is refused at decode time instead of changing the
signed string (reference/momo.md §8.2). Gateway payloads never forbid unknown fields:
MoMo may add some, and the signature covers only the listed ones.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from providers.base import PaymentStatus
from providers.codes import Code, CodeOutcome

# MoMo documents amount, transId and responseTime as Java `Long`.
Long = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
ResultCode = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]  # a Java int


class Ipn(msgspec.Struct, kw_only=True):
    """The IPN MoMo POSTs to the create request's `ipnUrl` (reference §1), in MoMo's field order."""

    partnerCode: str
    orderId: str
    requestId: str
    amount: Long
    orderInfo: str
    orderType: str
    transId: Long
    resultCode: ResultCode
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
    resultCode: ResultCode
    transId: Long = 0
    createdTime: Long = 0


class QueryResponse(msgspec.Struct, kw_only=True):
    """The query answer (§6). Error answers carry only some fields, hence the defaults."""

    resultCode: ResultCode
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


_P, _RF, _RQ, _RT = CodeOutcome.PAYMENT, CodeOutcome.IGNORE, CodeOutcome.REJECT, CodeOutcome.RETRY
_S = PaymentStatus

# Every documented resultCode (reference/momo.md §4), with MoMo's wording as the comment. Refund
# results answer our refund calls: they say nothing new about a payment (IGNORE).
RESULT_CODES: dict[int, Code] = {
    0: Code(_P, _S.SUCCEEDED),  # Successful.
    9000: Code(_P, _S.AUTHORIZED, final=False),  # Transaction is authorized successfully (capture or cancel next)
    8000: Code(_P, _S.PENDING, final=False),  # Waiting for the user to re-confirm
    1000: Code(_P, _S.PENDING, final=False),  # Initiated, waiting for the user to confirm
    7000: Code(_P, _S.PROCESSING, final=False),  # Transaction is being processed
    7002: Code(_P, _S.PROCESSING, final=False),  # Being processed by the payment-instrument provider
    1001: Code(_P, _S.FAILED),  # Insufficient funds
    1002: Code(_P, _S.FAILED),  # Rejected by the issuer of the payment method
    1003: Code(_P, _S.CANCELED),  # Cancelled after authorisation (merchant cancel or MoMo timeout)
    1004: Code(_P, _S.FAILED),  # Over the daily/monthly payment limit
    1005: Code(_P, _S.CANCELED),  # Payment URL or QR code expired
    1006: Code(_P, _S.CANCELED),  # User declined to confirm the payment
    1007: Code(_P, _S.FAILED),  # Wallet inactive or does not exist
    1017: Code(_P, _S.CANCELED),  # Cancelled by the merchant
    1026: Code(_P, _S.FAILED),  # Restricted by promotion rules
    4001: Code(_P, _S.FAILED),  # Account restricted (incomplete KYC)
    4002: Code(_P, _S.FAILED),  # Account not verified with C06 (biometric ID)
    4100: Code(_P, _S.FAILED),  # User failed to log in
    98: Code(_P, _S.FAILED),  # QR code could not be generated
    99: Code(_P, _S.FAILED, flag="unknown_error"),  # Unknown error: confirm the payment with MoMo
    1080: Code(_RF),  # Refund failed while processing; retry later
    1081: Code(_RF),  # Refund rejected: already refunded or exceeds the refundable amount
    1088: Code(_RF),  # Refund rejected: the payment is not refundable
    2019: Code(_RQ),  # Invalid orderGroupId
    10: Code(_RT, final=False),  # System is under maintenance
    11: Code(_RQ, final=False),  # Access denied
    12: Code(_RQ, final=False),  # API version not supported
    13: Code(_RQ, final=False),  # Merchant authentication failed (bad signature or keys)
    20: Code(_RQ, final=False),  # Bad format request (incl. wrong signature, see subErrors)
    21: Code(_RQ, final=False),  # Invalid amount
    22: Code(_RQ, final=False),  # Amount out of range
    40: Code(_RQ, final=False),  # Duplicated requestId
    41: Code(_RQ, final=False),  # Duplicated orderId
    42: Code(CodeOutcome.NOT_FOUND, final=False),  # Invalid orderId or orderId not found
    43: Code(_RT, final=False),  # A similar transaction is being processed
    45: Code(_RQ, final=False),  # Duplicated itemId
    47: Code(_RQ, final=False),  # Inapplicable information in the given data set
}
