"""What the MoMo simulator knows: its payments, MoMo's limits and messages, its own signing.

The signature strings are built here from sorted keys, as MoMo's documentation describes them;
the adapter uses fixed templates. Both are checked against the vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import msgspec

ORDER_ID = re.compile(r"^[0-9a-zA-Z]+(?:[-_.]+[0-9a-zA-Z]+)*$")
AMOUNT_LIMITS = {
    "captureWallet": (1_000, 50_000_000),
    "payWithATM": (10_000, 50_000_000),
    "payWithCC": (1_000, 10_000_000),
}
REFUND_LIMITS = (1_000, 50_000_000)

MESSAGES: dict[int, str] = {
    0: "Successful.",
    9000: "Transaction is authorized successfully.",
    8000: "The transaction is waiting for the user to confirm again.",
    1000: "Transaction is initiated, waiting for user confirmation.",
    7000: "Transaction is being processed.",
    7002: "Transaction is being processed by the provider of the payment instrument.",
    1001: "Transaction failed due to insufficient funds.",
    1002: "Transaction rejected by the issuers of the payment methods.",
    1003: "Transaction cancelled after successfully authorized.",
    1004: "Transaction failed because the amount exceeds the daily/monthly payment limit.",
    1005: "Transaction failed because the url or QR code expired.",
    1006: "Transaction denied by user.",
    1007: "Transaction rejected due to inactive or nonexistent account.",
    1017: "Transaction cancelled by merchant.",
    1026: "Transaction restricted due to promotion rules.",
    4001: "Transaction restricted due to incomplete KYC.",
    4002: "Transaction restricted: account not verified with C06.",
    4100: "Transaction failed because user failed to login.",
    98: "QR Code generation failed.",
    99: "Unknown error.",
    1081: "Refund rejected: already refunded or exceeds the refundable amount.",
    1088: "Refund rejected: the payment is not refundable.",
    13: "Merchant authentication failed.",
    20: "Bad format request.",
    22: "Transaction amount is out of range.",
    41: "Duplicated orderId.",
    42: "Invalid orderId or orderId is not found.",
}


def raw_sorted(values: dict[str, object]) -> str:
    """MoMo's rule from first principles: every signed key, sorted, `k=v` joined by `&`, values raw."""
    return "&".join(f"{key}={'' if value is None else value}" for key, value in sorted(values.items()))


def sign_sorted(secret: str, values: dict[str, object]) -> str:
    return hmac.new(secret.encode(), raw_sorted(values).encode(), hashlib.sha256).hexdigest()


class Refund(msgspec.Struct, kw_only=True):
    orderId: str
    requestId: str
    amount: int
    transId: int
    resultCode: int
    createdTime: int


class Payment(msgspec.Struct, kw_only=True):
    """One MoMo payment (an orderId) as MoMo holds it."""

    orderId: str
    requestId: str
    amount: int
    orderInfo: str
    extraData: str = ""
    ipnUrl: str | None = None
    redirectUrl: str = ""
    requestType: str = "captureWallet"
    autoCapture: bool = True
    account: str = "default"
    transId: int = 0
    resultCode: int = 1000
    payType: str = ""
    responseTime: int = 0
    refunds: list[Refund] = []

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.resultCode == 0)
