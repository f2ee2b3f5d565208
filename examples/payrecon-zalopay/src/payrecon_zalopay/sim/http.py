"""The ZaloPay simulator's HTTP face: `POST /v2/query` as ZaloPay serves it, plus the `/_sim/` control API."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath, JSONBody

from payrecon_zalopay.sim.simulator import MESSAGES, SUB_MESSAGES, zalopay_mac
from providers.base import PaymentStatus
from providers.simkit import api_fault, fault_routes

if TYPE_CHECKING:
    from payrecon_zalopay.sim.simulator import Simulator


class CreateIn(msgspec.Struct, kw_only=True):
    order_id: str
    amount: int
    currency: str = "VND"
    account: str = "default"
    reference: str | None = None


class StatusIn(msgspec.Struct, kw_only=True):
    status: PaymentStatus | None = None
    return_code: int | None = None  # any ZaloPay pair, documented or not; wins over `status`
    sub_return_code: int = 0
    is_processing: bool = False


class RefundIn(msgspec.Struct, kw_only=True):
    amount: int


def _json(obj: Any, status_code: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(obj), status_code=status_code, media_type="application/json")


def _answer(return_code: int, sub_return_code: int, **fields: Any) -> Response[bytes]:
    return _json(
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
        fault = await api_fault(sim.faults, sim.rng)
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

    # --- control API ---------------------------------------------------------------------

    def control(action: Callable[[], object], status_code: int = 200) -> Response[bytes]:
        try:
            result = action()
        except KeyError as exc:
            return _json({"error": str(exc.args[0])}, 404)
        except ValueError as exc:
            return _json({"error": str(exc)}, 409)
        return _json(result, status_code)

    def view(reference: str) -> dict[str, Any]:
        payment = sim.get_payment(reference)
        return {**msgspec.to_builtins(payment), "refunded": sum(payment.refunds)}

    @post("/_sim/payments", status_code=201)
    async def sim_create(data: JSONBody[CreateIn]) -> Response[bytes]:
        return control(
            lambda: sim.create_payment(
                order_id=data.order_id,
                amount=data.amount,
                currency=data.currency,
                account=data.account,
                reference=data.reference,
            ),
            201,
        )

    @get("/_sim/payments")
    async def sim_list() -> Response[bytes]:
        return control(lambda: [view(ref) for ref in sim.payments])

    @get("/_sim/payments/{reference:str}")
    async def sim_show(reference: FromPath[str]) -> Response[bytes]:
        return control(lambda: view(reference))

    @post("/_sim/payments/{reference:str}/status", status_code=200)
    async def sim_status(reference: FromPath[str], data: JSONBody[StatusIn]) -> Response[bytes]:
        def act() -> dict[str, Any]:
            if data.return_code is not None:
                sim.set_result(reference, data.return_code, data.sub_return_code, data.is_processing)
            elif data.status is not None:
                sim.set_status(reference, data.status)
            else:
                raise ValueError("give status (a PaymentStatus) or return_code (a ZaloPay return_code)")
            return view(reference)

        return control(act)

    @post("/_sim/payments/{reference:str}/refund", status_code=200)
    async def sim_refund(reference: FromPath[str], data: JSONBody[RefundIn]) -> Response[bytes]:
        def act() -> dict[str, Any]:
            sim.refund(reference, data.amount)
            return view(reference)

        return control(act)

    return Litestar(
        route_handlers=[query, sim_create, sim_list, sim_show, sim_status, sim_refund, *fault_routes(sim)],
        logging_config=None,  # leave logging to the host (uvicorn, pytest)
    )
