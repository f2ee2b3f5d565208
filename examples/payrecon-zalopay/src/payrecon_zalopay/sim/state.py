"""What the ZaloPay simulator knows: its orders, ZaloPay's messages and id rules, its own mac.

The mac is computed here from ZaloPay's documentation (NOTES.md §2, §4), never with the adapter's
signing.py: a signing bug in the adapter then fails the tests instead of being mirrored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta, timezone

import msgspec

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

    @property
    def refunded(self) -> int:
        return sum(self.refunds)
