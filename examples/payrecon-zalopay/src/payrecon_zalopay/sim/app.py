"""The ZaloPay simulator's HTTP face: `POST /v2/query` as ZaloPay serves it, plus the `/_sim/` control API."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar, Request, Response, post

from payrecon_zalopay.sim.state import MESSAGES, SUB_MESSAGES, zalopay_mac
from providers.base import PaymentStatus
from providers.simkit import control_routes, json_response

if TYPE_CHECKING:
    from payrecon_zalopay.sim.simulator import Simulator


class StatusIn(msgspec.Struct, kw_only=True):
    """`POST /_sim/payments/{app_trans_id}/status`: a status, or any ZaloPay code pair."""

    status: PaymentStatus | None = None
    return_code: int | None = None  # any ZaloPay pair, documented or not; wins over `status`
    sub_return_code: int = 0
    is_processing: bool = False


def _answer(return_code: int, sub_return_code: int, **fields: Any) -> Response[bytes]:
    return json_response(
        {
            "return_code": return_code,
            "return_message": MESSAGES.get(return_code, ""),
            "sub_return_code": sub_return_code,
            "sub_return_message": SUB_MESSAGES.get(sub_return_code, MESSAGES.get(sub_return_code, "")),
            **fields,
        }
    )


async def _fields(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The query's fields: ZaloPay takes them form-encoded (its SDK's choice) or as JSON."""
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            found = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return {}
        return found if isinstance(found, dict) else {}
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}


def build_app(sim: Simulator) -> Litestar:
    @post("/v2/query", status_code=200)
    async def query(request: Request[Any, Any, Any]) -> Response[bytes]:
        fault = await sim.api_fault()
        if fault is not None:
            return fault
        fields = await _fields(request)
        app_id, app_trans_id, mac = (str(fields.get(k, "")) for k in ("app_id", "app_trans_id", "mac"))
        if not (app_id and app_trans_id and mac):
            return _answer(2, -401)
        expected = zalopay_mac(sim.key1, f"{app_id}|{app_trans_id}|{sim.key1}")
        if app_id != str(sim.app_id) or not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
            return _answer(2, -402)
        payment = sim.payments.get(app_trans_id)
        if payment is None:
            return _answer(2, -101, is_processing=False, amount=0, zp_trans_id=0)  # (unconfirmed)
        paid = payment.return_code == 1
        return _answer(
            payment.return_code,
            payment.sub_return_code,
            is_processing=payment.is_processing,
            amount=payment.amount if paid else 0,
            zp_trans_id=payment.zp_trans_id if paid else 0,
            server_time=payment.server_time if paid else 0,
            discount_amount=0,
        )

    return Litestar(
        route_handlers=[query, *control_routes(sim)],
        logging_config=None,  # leave logging to the host (uvicorn, pytest)
    )
