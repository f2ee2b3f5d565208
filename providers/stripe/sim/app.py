"""The simulator's HTTP face: Stripe's REST paths payrecon reads, and the /_sim/ control API.

Stripe's behaviour (reference/stripe.md §6): Bearer (or Basic) auth with Stripe's error JSON,
404 `resource_missing`, `expand[]`, metadata search, a newest-first /v1/events list with
created[gt|gte|lt|lte], type/types[], limit 1–100 and starting_after/ending_before cursors.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response, get
from litestar.params import FromPath

from providers.simkit import control_routes

if TYPE_CHECKING:
    from providers.stripe.sim.simulator import Simulator

_SEARCH_CLAUSE = re.compile(
    r"\s*(?:metadata\[(?P<key>'(?:[^'\\]|\\.)*')\]|(?P<field>[a-z_]+))\s*:\s*(?P<value>'(?:[^'\\]|\\.)*')\s*"
)


class SimulatorError(ValueError):
    """A call Stripe itself would refuse (unknown payment, impossible transition, refund too large)."""

    def __init__(
        self, message: str, *, status_code: int = 400, code: str = "parameter_invalid", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.param = param


def stripe_error(status_code: int, message: str, *, code: str | None = None, param: str | None = None) -> Response[Any]:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return Response({"error": error}, status_code=status_code)


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def authorized(sim: Simulator, request: Request[Any, Any, Any]) -> Response[Any] | None:
    value = request.headers.get("authorization", "")
    scheme, _, credential = value.partition(" ")
    key = credential.strip()
    if scheme.lower() == "basic":  # Stripe also takes the key as the Basic user name
        try:
            key = base64.b64decode(credential, validate=True).decode().partition(":")[0]
        except ValueError:
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not key:
        return stripe_error(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if key != sim.api_key:
        return stripe_error(401, f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}")
    return None


async def guard(sim: Simulator, request: Request[Any, Any, Any]) -> Response[Any] | None:
    return await sim.api_fault() or authorized(sim, request)


def render_intent(sim: Simulator, pi: dict[str, Any], expand: Sequence[str], prefix: str = "") -> dict[str, Any]:
    out = copy.deepcopy(pi)
    if f"{prefix}latest_charge" in expand and pi["latest_charge"]:
        out["latest_charge"] = copy.deepcopy(sim.charges[pi["latest_charge"]])
    return out


def search(sim: Simulator, query: str) -> list[dict[str, Any]]:
    clauses = [c for c in re.split(r"\s+AND\s+", query.strip()) if c]
    if not clauses:
        raise SimulatorError("The search query is empty", param="query")
    tests: list[tuple[str | None, str, str]] = []
    for clause in clauses:
        m = _SEARCH_CLAUSE.fullmatch(clause)
        if m is None or (m["field"] is not None and m["field"] not in ("status", "currency")):
            raise SimulatorError(f"Invalid search query: {clause!r}", param="query")
        key = _unquote(m["key"]) if m["key"] is not None else None
        tests.append((key, m["field"] or "metadata", _unquote(m["value"])))
    found = []
    for pi in sim.intents.values():
        if all((pi["metadata"].get(key) if key is not None else pi.get(field)) == value for key, field, value in tests):
            found.append(pi)
    return sorted(found, key=lambda pi: pi["created"], reverse=True)


def list_events(sim: Simulator, request: Request[Any, Any, Any]) -> dict[str, Any]:
    q = request.query_params
    try:
        limit = int(q.get("limit", "10"))
    except ValueError:
        raise SimulatorError("Invalid integer: limit", param="limit", code="parameter_invalid_integer") from None
    if not 1 <= limit <= 100:
        raise SimulatorError("limit must be between 1 and 100", param="limit", code="parameter_invalid_integer")
    if "type" in q and "types[]" in q:
        raise SimulatorError("You may only specify one of these parameters: type, types.", param="types")
    seq = {e["id"]: i for i, e in enumerate(sim.events)}
    bounds: dict[str, int] = {}
    for op in ("gt", "gte", "lt", "lte"):
        raw = q.get(f"created[{op}]")
        if raw is not None:
            try:
                bounds[op] = int(raw)
            except ValueError:
                raise SimulatorError(
                    f"Invalid integer: created[{op}]", param="created", code="parameter_invalid_integer"
                ) from None
    kinds = q.getall("types[]", [])
    pattern = q.get("type")
    matcher = re.compile(re.escape(pattern).replace(r"\*", ".*")) if pattern else None

    def keep(e: dict[str, Any]) -> bool:
        c = e["created"]
        if ("gt" in bounds and c <= bounds["gt"]) or ("gte" in bounds and c < bounds["gte"]):
            return False
        if ("lt" in bounds and c >= bounds["lt"]) or ("lte" in bounds and c > bounds["lte"]):
            return False
        if kinds and e["type"] not in kinds:
            return False
        return matcher is None or matcher.fullmatch(e["type"]) is not None

    newest_first = [e for e in reversed(sim.events) if keep(e)]
    for cursor in ("starting_after", "ending_before"):
        if q.get(cursor) is not None and q[cursor] not in seq:
            raise SimulatorError(f"No such event: '{q[cursor]}'", param=cursor, code="resource_missing")
    if q.get("starting_after") is not None:
        after = seq[q["starting_after"]]
        newest_first = [e for e in newest_first if seq[e["id"]] < after]
        page, has_more = newest_first[:limit], len(newest_first) > limit
    elif q.get("ending_before") is not None:
        before = seq[q["ending_before"]]
        newer = [e for e in newest_first if seq[e["id"]] > before]
        page, has_more = newer[-limit:], len(newer) > limit
    else:
        page, has_more = newest_first[:limit], len(newest_first) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": "/v1/events"}


def build_app(sim: Simulator) -> Litestar:
    """The litestar app of one simulator."""

    def failed(exc: SimulatorError) -> Response[Any]:
        return stripe_error(exc.status_code, str(exc), code=exc.code, param=exc.param)

    @get("/v1/payment_intents/search")
    async def search_intents(request: Request[Any, Any, Any]) -> Response[Any]:
        if (refused := await guard(sim, request)) is not None:
            return refused
        expand = request.query_params.getall("expand[]", [])
        try:
            found = search(sim, request.query_params.get("query", ""))
        except SimulatorError as exc:
            return failed(exc)
        limit = request.query_params.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            return stripe_error(400, "limit must be between 1 and 100", code="parameter_invalid_integer")
        found, more = found[: int(limit)], len(found) > int(limit)
        data = [render_intent(sim, pi, expand, "data.") for pi in found]
        return Response(
            {
                "object": "search_result",
                "data": data,
                "has_more": more,
                "next_page": None,
                "url": "/v1/payment_intents/search",
            }
        )

    @get("/v1/payment_intents/{intent_id:str}")
    async def get_intent(intent_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
        if (refused := await guard(sim, request)) is not None:
            return refused
        pi = sim.intents.get(intent_id)
        if pi is None:
            return stripe_error(404, f"No such payment_intent: '{intent_id}'", code="resource_missing", param="intent")
        return Response(render_intent(sim, pi, request.query_params.getall("expand[]", [])))

    @get("/v1/events")
    async def events_list(request: Request[Any, Any, Any]) -> Response[Any]:
        if (refused := await guard(sim, request)) is not None:
            return refused
        try:
            return Response(list_events(sim, request))
        except SimulatorError as exc:
            return failed(exc)

    @get("/v1/events/{event_id:str}")
    async def get_event(event_id: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
        if (refused := await guard(sim, request)) is not None:
            return refused
        event = next((e for e in sim.events if e["id"] == event_id), None)
        if event is None:
            return stripe_error(404, f"No such event: '{event_id}'", code="resource_missing", param="id")
        return Response(event)

    return Litestar(
        route_handlers=[
            search_intents,
            get_intent,
            events_list,
            get_event,
            *control_routes(sim),
        ],
        openapi_config=None,
    )
