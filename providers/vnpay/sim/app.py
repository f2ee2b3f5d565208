"""The simulator's HTTP face: VNPay's merchant API (querydr, refund) and the /_sim/ control API."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar, Response, post
from litestar.params import FromPath, JSONBody, RawBody

from providers.simkit import control_routes, controlled
from providers.vnpay.sim.signing import same_checksum, sign_pipe
from providers.vnpay.sim.state import SimTransaction
from providers.vnpay.sim.wire import REFUND_CODES, RefundRequest
from providers.vnpay.wire import API_PATH, PAYMENT, VERSION, ApiResponse, QueryDrRequest

if TYPE_CHECKING:
    from providers.vnpay.sim.simulator import Simulator


class MerchantApi:
    """POST /merchant_webapi/api/transaction as VNPay answers it (reference/vnpay.md §6)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def answer(self, body: bytes) -> dict[str, Any]:
        try:
            fields = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return _unsigned("03", "Invalid data format")
        if not isinstance(fields, dict):
            return _unsigned("03", "Invalid data format")
        command = fields.get("vnp_Command")
        if fields.get("vnp_TmnCode") != self.sim.tmn_code:
            return _unsigned("02", "Invalid TmnCode", command)
        failure = ApiResponse(vnp_Command=str(command), vnp_ResponseCode="03")
        try:
            request: QueryDrRequest | RefundRequest
            if command == "querydr":
                request = msgspec.convert(fields, QueryDrRequest)
            elif command == "refund":
                request = msgspec.convert(fields, RefundRequest)
            else:
                return self._signed(failure, "Invalid command")
        except msgspec.ValidationError as exc:
            return self._signed(failure, f"Invalid data: {exc}")
        if not same_checksum(sign_pipe(request.signed_values(), self.sim.hash_secret), request.vnp_SecureHash):
            return self._signed(msgspec.structs.replace(failure, vnp_ResponseCode="97"), "Invalid Checksum")
        if request.vnp_RequestId in self.sim.request_ids:
            return self._signed(msgspec.structs.replace(failure, vnp_ResponseCode="94"), "Duplicate request")
        self.sim.request_ids.add(request.vnp_RequestId)
        if request.vnp_Version != VERSION:
            return self._signed(failure, "Invalid version")
        txn = self.sim.payments.get(request.vnp_TxnRef)
        # VNPay finds a transaction by TxnRef *and* its original date (pitfall 9).
        if txn is None or txn.create_date != request.vnp_TransactionDate:
            not_found = msgspec.structs.replace(failure, vnp_ResponseCode="91", vnp_TxnRef=request.vnp_TxnRef)
            return self._signed(not_found, "Transaction not found")
        if isinstance(request, QueryDrRequest):
            return self._querydr(txn)
        return self._refund(txn, request)

    def _querydr(self, txn: SimTransaction) -> dict[str, Any]:
        answer = self._describe(txn, "querydr", "00")
        if txn.refunds:  # querydr reports the latest refund (see status.querydr_verdict)
            latest = txn.refunds[-1]
            answer = msgspec.structs.replace(
                answer,
                vnp_TransactionType=latest.transaction_type,
                vnp_TransactionStatus=latest.transaction_status,
                vnp_Amount=str(latest.amount * 100),
            )
        return self._signed(answer, "QueryDR Success")

    def _refund(self, txn: SimTransaction, request: RefundRequest) -> dict[str, Any]:
        amount_text = request.vnp_Amount
        code = "03"
        if amount_text.isascii() and amount_text.isdigit() and int(amount_text) % 100 == 0:
            code = self.sim.apply_refund(txn, int(amount_text) // 100, request.vnp_TransactionType)
        answer = self._describe(txn, "refund", code)
        if code == "00":
            latest = txn.refunds[-1]
            answer = msgspec.structs.replace(
                answer, vnp_TransactionType=latest.transaction_type, vnp_Amount=str(latest.amount * 100)
            )
        return self._signed(answer, REFUND_CODES[code], refund=True)

    def _describe(self, txn: SimTransaction, command: str, code: str) -> ApiResponse:
        return ApiResponse(
            vnp_Command=command,
            vnp_ResponseCode=code,
            vnp_TmnCode=self.sim.tmn_code,
            vnp_TxnRef=txn.reference,
            vnp_Amount=str(txn.amount * 100),
            vnp_BankCode=txn.bank_code,
            vnp_CardType=txn.card_type,
            vnp_PayDate=txn.pay_date,
            vnp_TransactionNo=txn.transaction_no,
            vnp_TransactionType=PAYMENT,
            vnp_TransactionStatus=txn.transaction_status,
            vnp_OrderInfo=txn.order_info,
        )

    def _signed(self, answer: ApiResponse, message: str, *, refund: bool = False) -> dict[str, Any]:
        answer = msgspec.structs.replace(answer, vnp_ResponseId=uuid.uuid4().hex, vnp_Message=message)
        values = answer.refund_signed_values() if refund else answer.querydr_signed_values()
        answer = msgspec.structs.replace(answer, vnp_SecureHash=sign_pipe(values, self.sim.hash_secret))
        out: dict[str, Any] = msgspec.to_builtins(answer)
        return out


def _unsigned(code: str, message: str, command: object = None) -> dict[str, Any]:
    """An answer VNPay cannot sign: it does not know which terminal's secret to use."""
    out: dict[str, Any] = {"vnp_ResponseId": uuid.uuid4().hex, "vnp_ResponseCode": code, "vnp_Message": message}
    if isinstance(command, str):
        out["vnp_Command"] = command
    return out


class NativeBody(msgspec.Struct, kw_only=True):
    """`POST /_sim/payments/{vnp_TxnRef}/native`: any (vnp_ResponseCode, vnp_TransactionStatus) pair."""

    response_code: str
    transaction_status: str


def build_app(sim: Simulator) -> Litestar:
    api = MerchantApi(sim)

    @post(API_PATH, status_code=200)
    async def transaction_api(body: RawBody) -> Response[Any]:
        fault = await sim.api_fault()
        if fault is not None:
            return fault
        return Response(api.answer(body), status_code=200, media_type="application/json")

    @post("/_sim/payments/{reference:str}/native", status_code=200)
    async def native(reference: FromPath[str], data: JSONBody[NativeBody]) -> Response[bytes]:
        def move() -> object:
            sim.set_native(reference, data.response_code, data.transaction_status)
            return sim.view(reference)

        return controlled(sim, move)

    return Litestar(route_handlers=[transaction_api, native, *control_routes(sim)])
