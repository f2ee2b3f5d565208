"""VNPay's wire formats (IPN query, querydr/refund JSON, IPN answer) and its code tables as data.

Field names are VNPay's own; the tables carry VNPay's wording (reference/vnpay.md §4, §5).
"""

from __future__ import annotations

import msgspec

from providers.base import PaymentStatus
from providers.codes import Code, CodeOutcome

API_PATH = "/merchant_webapi/api/transaction"
DEFAULT_API_BASE = "https://sandbox.vnpayment.vn"
VERSION = "2.1.0"


# --- IPN (GET query string; also the return URL) -------------------------------------------


class Ipn(msgspec.Struct, frozen=True, kw_only=True):
    """The decoded, signed `vnp_*` parameters of an IPN. All text: they arrive as query values."""

    vnp_TmnCode: str
    vnp_Amount: str  # amount × 100
    vnp_ResponseCode: str
    vnp_TransactionStatus: str
    vnp_TxnRef: str
    vnp_TransactionNo: str  # "0" when nothing was paid
    vnp_BankCode: str = ""
    vnp_BankTranNo: str = ""  # absent on failures
    vnp_CardType: str = ""
    vnp_OrderInfo: str = ""
    vnp_PayDate: str = ""  # yyyyMMddHHmmss GMT+7


# --- querydr / refund (POST JSON to API_PATH) ------------------------------------------------


class QueryDrRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Field order is the order of vector vnpay-08's body; msgspec encodes in declaration order."""

    vnp_RequestId: str
    vnp_Version: str
    vnp_Command: str
    vnp_TmnCode: str
    vnp_TxnRef: str
    vnp_OrderInfo: str
    vnp_TransactionDate: str
    vnp_CreateDate: str
    vnp_IpAddr: str
    vnp_SecureHash: str = ""

    def signed_values(self) -> tuple[str, ...]:
        return (
            self.vnp_RequestId,
            self.vnp_Version,
            self.vnp_Command,
            self.vnp_TmnCode,
            self.vnp_TxnRef,
            self.vnp_TransactionDate,
            self.vnp_CreateDate,
            self.vnp_IpAddr,
            self.vnp_OrderInfo,
        )


Text = str | int


def text(value: Text) -> str:
    return value if isinstance(value, str) else str(value)


class ApiResponse(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A querydr or refund answer. Absent fields are signed as "" (vector vnpay-09)."""

    vnp_ResponseId: Text = ""
    vnp_Command: str = ""
    vnp_ResponseCode: Text = ""
    vnp_Message: str = ""
    vnp_TmnCode: str = ""
    vnp_TxnRef: str = ""
    vnp_Amount: Text = ""
    vnp_BankCode: str = ""
    vnp_CardType: str = ""
    vnp_PayDate: Text = ""
    vnp_TransactionNo: Text = ""
    vnp_TransactionType: Text = ""
    vnp_TransactionStatus: Text = ""
    vnp_OrderInfo: str = ""
    vnp_PromotionCode: str = ""
    vnp_PromotionAmount: Text = ""
    vnp_SecureHash: str = ""

    def querydr_signed_values(self) -> tuple[str, ...]:
        """The 15 fields of the querydr response string (§2), in order."""
        return (*self._common(), text(self.vnp_OrderInfo), self.vnp_PromotionCode, text(self.vnp_PromotionAmount))

    def refund_signed_values(self) -> tuple[str, ...]:
        """The 13 fields of the refund response string (§2), in order."""
        return (*self._common(), self.vnp_OrderInfo)

    def _common(self) -> tuple[str, ...]:
        return (
            text(self.vnp_ResponseId),
            self.vnp_Command,
            text(self.vnp_ResponseCode),
            self.vnp_Message,
            self.vnp_TmnCode,
            self.vnp_TxnRef,
            text(self.vnp_Amount),
            self.vnp_BankCode,
            text(self.vnp_PayDate),
            text(self.vnp_TransactionNo),
            text(self.vnp_TransactionType),
            text(self.vnp_TransactionStatus),
        )


# --- our answer to an IPN ----------------------------------------------------------------------


class IpnAnswer(msgspec.Struct, frozen=True):
    RspCode: str
    Message: str


# RspCode → VNPay's sample Message (§5). VNPay stops on 00/02 and retries the rest.
CONFIRM_SUCCESS = IpnAnswer("00", "Confirm Success")
ORDER_NOT_FOUND = IpnAnswer("01", "Order not found")
ALREADY_CONFIRMED = IpnAnswer("02", "Order already confirmed")
INVALID_AMOUNT = IpnAnswer("04", "Invalid amount")
INVALID_SIGNATURE = IpnAnswer("97", "Invalid signature")
INVALID_REQUEST = IpnAnswer("99", "Invalid request")
UNKNOWN_ERROR = IpnAnswer("99", "Unknow error")  # sic: VNPay's sample spelling


# --- code tables ---------------------------------------------------------------------------------


P = PaymentStatus
_PAY = CodeOutcome.PAYMENT

# vnp_ResponseCode of an IPN / return URL (VNPay PAY table).
RESPONSE_CODES: dict[str, Code] = {
    "00": Code(_PAY, P.SUCCEEDED, ""),  # Giao dịch thành công — only with TransactionStatus 00
    "07": Code(_PAY, P.PROCESSING, "suspected fraud", "fraud_review"),  # Trừ tiền thành công, giao dịch bị nghi ngờ
    "09": Code(_PAY, P.FAILED, "card not enrolled in internet banking"),  # Thẻ/Tài khoản chưa đăng ký InternetBanking
    "10": Code(_PAY, P.FAILED, "card details wrong more than 3 times"),  # Xác thực thông tin thẻ sai quá 3 lần
    "11": Code(_PAY, P.CANCELED, "payment window expired"),  # Đã hết hạn chờ thanh toán
    "12": Code(_PAY, P.FAILED, "card locked"),  # Thẻ/Tài khoản bị khóa
    "13": Code(_PAY, P.FAILED, "wrong OTP"),  # Nhập sai mật khẩu xác thực giao dịch (OTP)
    "24": Code(_PAY, P.CANCELED, "customer cancelled"),  # Khách hàng hủy giao dịch
    "51": Code(_PAY, P.FAILED, "insufficient balance"),  # Tài khoản không đủ số dư
    "65": Code(_PAY, P.FAILED, "daily limit exceeded"),  # Vượt quá hạn mức giao dịch trong ngày
    "75": Code(_PAY, P.FAILED, "bank under maintenance"),  # Ngân hàng thanh toán đang bảo trì
    "79": Code(_PAY, P.FAILED, "wrong payment password too many times"),  # Nhập sai mật khẩu thanh toán quá số lần
    "99": Code(_PAY, P.FAILED, "other error"),  # Các lỗi khác
    # Older tables and some libraries:
    "01": Code(_PAY, P.FAILED, "transaction already exists"),
    "02": Code(_PAY, P.FAILED, "invalid merchant"),
    "03": Code(_PAY, P.FAILED, "invalid data format"),
    "04": Code(_PAY, P.FAILED, "website locked"),
    "05": Code(_PAY, P.FAILED, "wrong password"),
    "06": Code(_PAY, P.FAILED, "wrong OTP"),
    "08": Code(_PAY, P.FAILED, "bank under maintenance"),
}

# vnp_TransactionStatus: the state at VNPay, on IPNs and querydr answers.
TRANSACTION_STATUSES: dict[str, Code] = {
    "00": Code(_PAY, P.SUCCEEDED, "successful"),  # Giao dịch thành công
    "01": Code(_PAY, P.PENDING, "not completed yet"),  # Giao dịch chưa hoàn tất
    "02": Code(_PAY, P.FAILED, "failed"),  # Giao dịch bị lỗi
    "04": Code(_PAY, P.FAILED, "reversed", "reversal"),  # Giao dịch đảo: trừ tiền ở ngân hàng, chưa thành công ở VNPay
    "05": Code(
        CodeOutcome.IGNORE, None, "refund in progress at VNPay"
    ),  # VNPAY đang xử lý giao dịch này (GD hoàn tiền)
    "06": Code(CodeOutcome.IGNORE, None, "refund sent to the bank"),  # VNPAY đã gửi yêu cầu hoàn tiền sang Ngân hàng
    "07": Code(_PAY, P.PROCESSING, "suspected fraud", "fraud_review"),  # Giao dịch bị nghi ngờ gian lận
    "09": Code(CodeOutcome.IGNORE, None, "refund rejected", "refund_rejected"),  # GD Hoàn trả bị từ chối
    # Techspec PDF summary only (unconfirmed):
    "08": Code(_PAY, P.CANCELED, "timed out"),
    "10": Code(_PAY, P.SUCCEEDED, "delivered"),
    "11": Code(_PAY, P.CANCELED, "cancelled"),
    "20": Code(_PAY, P.SUCCEEDED, "settled to merchant"),
}

# vnp_TransactionType of querydr / refund.
PAYMENT = "01"  # Thanh toán
FULL_REFUND = "02"  # Hoàn trả toàn phần
PARTIAL_REFUND = "03"  # Hoàn trả một phần


# querydr vnp_ResponseCode: about the request, not the payment.
QUERYDR_CODES: dict[str, Code] = {
    "00": Code(CodeOutcome.PAYMENT, text="request accepted"),  # Yêu cầu thành công
    "02": Code(CodeOutcome.REJECT, text="invalid TmnCode"),  # Mã định danh kết nối không hợp lệ
    "03": Code(CodeOutcome.REJECT, text="invalid data format"),  # Dữ liệu gửi sang không đúng định dạng
    "08": Code(CodeOutcome.RETRY, text="system maintenance"),  # Hệ thống đang bảo trì (Techspec)
    "91": Code(CodeOutcome.NOT_FOUND, text="transaction not found"),  # Không tìm thấy giao dịch yêu cầu
    "94": Code(CodeOutcome.RETRY, text="duplicate request within the time limit"),  # Yêu cầu bị trùng lặp
    "97": Code(CodeOutcome.REJECT, text="invalid checksum"),  # Checksum không hợp lệ
    "99": Code(CodeOutcome.RETRY, text="other error"),  # Các lỗi khác
}
