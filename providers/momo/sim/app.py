"""The MoMo simulator's HTTP face: MoMo's own endpoints plus the `/_sim/` control API."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar, Response, post
from litestar.params import RawBody

from providers.base import PaymentStatus
from providers.momo.sim.state import (
    AMOUNT_LIMITS,
    MESSAGES,
    ORDER_ID,
    Payment,
    raw_sorted,
    sign_sorted,
)
from providers.momo.sim.wire import CreateRequest, RefundRequest
from providers.momo.wire import QueryRequest
from providers.simkit import control_routes, json_response

if TYPE_CHECKING:
    from providers.momo.sim.simulator import Simulator

DecodeFailure = (msgspec.MsgspecError, ValueError)


class StatusIn(msgspec.Struct, kw_only=True):
    """`POST /_sim/payments/{orderId}/status`: a status, or any MoMo resultCode."""

    status: PaymentStatus | None = None
    result_code: int | None = None  # any MoMo code, documented or not; wins over `status`


def build_app(sim: Simulator) -> Litestar:
    def refusal(
        code: int, *, field: str | None = None, detail: str = "", echo: dict[str, Any] | None = None
    ) -> Response[bytes]:
        body: dict[str, Any] = {
            **(echo or {}),
            "responseTime": sim.now_ms(),
            "message": MESSAGES[code],
            "resultCode": code,
        }
        if field is not None:
            body["subErrors"] = [{"field": field, "message": detail}]
        return json_response(body, 400)  # (unconfirmed beyond resultCode 20) MoMo answers refusals with HTTP 400

    def authenticate(partner_code: str, signature: str, signed: Mapping[str, object]) -> Response[bytes] | None:
        if partner_code != sim.partner_code:
            return refusal(13)
        expected = sign_sorted(sim.secret_key, {**signed, "accessKey": sim.access_key})
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
            raw = raw_sorted({**signed, "accessKey": "*****"})  # MoMo shows the string it expected, key masked
            return refusal(
                20, field="signature", detail=f"Invalid signature. Check the raw data before hashing: {raw}."
            )
        return None

    @post("/v2/gateway/api/query", status_code=200)
    async def query(body: RawBody) -> Response[bytes]:
        fault = await sim.api_fault()
        if fault is not None:
            return fault
        try:
            req = msgspec.json.decode(body, type=QueryRequest)
        except DecodeFailure as exc:
            return refusal(20, field="body", detail=str(exc))
        if not 0 < len(req.requestId) <= 50:
            return refusal(20, field="requestId", detail="requestId must have 1 to 50 characters")
        signed = {"orderId": req.orderId, "partnerCode": req.partnerCode, "requestId": req.requestId}
        if (refused := authenticate(req.partnerCode, req.signature, signed)) is not None:
            return refused
        echo = {"partnerCode": req.partnerCode, "requestId": req.requestId, "orderId": req.orderId}
        payment = sim.payments.get(req.orderId)
        if payment is None:
            return refusal(42, echo=echo)
        return json_response(
            {
                **echo,
                "extraData": payment.extraData,
                "amount": payment.amount,
                "transId": payment.transId,
                "payType": payment.payType,
                "resultCode": payment.resultCode,
                "refundTrans": [msgspec.to_builtins(r) for r in payment.refunds],
                "message": MESSAGES.get(payment.resultCode, "Unknown error."),
                "responseTime": sim.now_ms(),
                "lastUpdated": payment.responseTime,
                "paymentOption": "momo",
                "promotionInfo": None,
            }
        )

    @post("/v2/gateway/api/create", status_code=200)
    async def create(body: RawBody) -> Response[bytes]:
        fault = await sim.api_fault()
        if fault is not None:
            return fault
        try:
            req = msgspec.json.decode(body, type=CreateRequest)
        except DecodeFailure as exc:
            return refusal(20, field="body", detail=str(exc))
        signed = {
            "amount": req.amount,
            "extraData": req.extraData,
            "ipnUrl": req.ipnUrl,
            "orderId": req.orderId,
            "orderInfo": req.orderInfo,
            "partnerCode": req.partnerCode,
            "redirectUrl": req.redirectUrl,
            "requestId": req.requestId,
            "requestType": req.requestType,
        }
        if (refused := authenticate(req.partnerCode, req.signature, signed)) is not None:
            return refused
        echo = {
            "partnerCode": req.partnerCode,
            "orderId": req.orderId,
            "requestId": req.requestId,
            "amount": req.amount,
        }
        if req.requestType not in AMOUNT_LIMITS:
            return refusal(20, field="requestType", detail=f"one of {sorted(AMOUNT_LIMITS)}", echo=echo)
        low, high = AMOUNT_LIMITS[req.requestType]
        if not low <= req.amount <= high:
            return refusal(22, echo=echo)
        if not ORDER_ID.match(req.orderId):
            return refusal(20, field="orderId", detail=f"must match {ORDER_ID.pattern}", echo=echo)
        if req.orderId in sim.payments:
            return refusal(41, echo=echo)
        payment = Payment(
            orderId=req.orderId,
            requestId=req.requestId,
            amount=req.amount,
            orderInfo=req.orderInfo,
            extraData=req.extraData,
            ipnUrl=req.ipnUrl,
            redirectUrl=req.redirectUrl,
            requestType=req.requestType,
            autoCapture=req.autoCapture,
        )
        try:
            sim.add_payment(payment)
        except ValueError:
            return refusal(41, echo=echo)
        token = secrets.token_urlsafe(12)
        return json_response(
            {
                **echo,
                "responseTime": sim.now_ms(),
                "message": MESSAGES[0],
                "resultCode": 0,
                "payUrl": f"https://test-payment.momo.vn/v2/gateway/pay?t={token}",
                "deeplink": f"momo://app?action=payWithApp&isScanQR=false&t={token}",
                "qrCodeUrl": f"momo://app?action=payWithApp&isScanQR=true&t={token}",
            }
        )

    @post("/v2/gateway/api/refund", status_code=200)
    async def refund(body: RawBody) -> Response[bytes]:
        fault = await sim.api_fault()
        if fault is not None:
            return fault
        try:
            req = msgspec.json.decode(body, type=RefundRequest)
        except DecodeFailure as exc:
            return refusal(20, field="body", detail=str(exc))
        signed = {
            "amount": req.amount,
            "description": req.description,
            "orderId": req.orderId,
            "partnerCode": req.partnerCode,
            "requestId": req.requestId,
            "transId": req.transId,
        }
        if (refused := authenticate(req.partnerCode, req.signature, signed)) is not None:
            return refused
        payment = next((p for p in sim.payments.values() if p.transId and p.transId == req.transId), None)
        # An unknown transId is answered as "not refundable" (unconfirmed).
        code = 1088 if payment is None else sim.apply_refund(payment, req.amount, req.orderId, req.requestId)
        trans_id = payment.refunds[-1].transId if payment is not None and code == 0 else req.transId
        answer = {
            "partnerCode": req.partnerCode,
            "orderId": req.orderId,
            "requestId": req.requestId,
            "amount": req.amount,
            "transId": trans_id,
            "resultCode": code,
            "message": MESSAGES[code],
            "responseTime": sim.now_ms(),
        }
        return json_response(answer, 400 if code in (22, 41) else 200)

    return Litestar(
        route_handlers=[
            query,
            create,
            refund,
            *control_routes(sim),
        ],
        logging_config=None,  # leave logging to the host (uvicorn, pytest); litestar's default echoes httpx at INFO
    )
