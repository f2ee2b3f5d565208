"""VNPay formats only the simulator reads: the refund API and the answers that end an IPN's retries."""

from __future__ import annotations

import msgspec

FINAL_RSP_CODES = frozenset({"00", "02"})  # VNPay stops sending an IPN once it hears one of these (§5)


class RefundRequest(msgspec.Struct, frozen=True, kw_only=True):
    vnp_RequestId: str
    vnp_Version: str
    vnp_Command: str
    vnp_TmnCode: str
    vnp_TransactionType: str  # "02" full, "03" partial
    vnp_TxnRef: str
    vnp_Amount: str  # refund amount × 100
    vnp_OrderInfo: str
    vnp_TransactionNo: str  # "0" when unknown
    vnp_TransactionDate: str
    vnp_CreateBy: str
    vnp_CreateDate: str
    vnp_IpAddr: str
    vnp_SecureHash: str = ""

    def signed_values(self) -> tuple[str, ...]:
        return (
            self.vnp_RequestId,
            self.vnp_Version,
            self.vnp_Command,
            self.vnp_TmnCode,
            self.vnp_TransactionType,
            self.vnp_TxnRef,
            self.vnp_Amount,
            self.vnp_TransactionNo,
            self.vnp_TransactionDate,
            self.vnp_CreateBy,
            self.vnp_CreateDate,
            self.vnp_IpAddr,
            self.vnp_OrderInfo,
        )


# Integrations type vnp_Amount / codes as numbers; accept both and sign the decimal text.


# refund vnp_ResponseCode (the simulator answers with these).
REFUND_CODES: dict[str, str] = {
    "00": "Refund success",  # Yêu cầu thành công
    "02": "Invalid TmnCode",
    "03": "Invalid data format",
    "08": "System maintenance",
    "16": "Refund not possible at this time",
    "91": "Transaction not found",
    "93": "Invalid refund amount",
    "94": "Refund already requested and in progress",
    "95": "Payment did not succeed at VNPay; cannot refund",
    "97": "Invalid checksum",
    "99": "Other error",
}
