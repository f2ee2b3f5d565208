"""What every gateway simulator shares: fault knobs, webhook delivery with retries, the `/_sim/` API.

A gateway's `Simulator` extends `SimulatorBase` (its account, clock, faults, dispatcher and the
control API) and adds what only it knows: its payments, its native states, its signing, its status
API. Simulators alone may import litestar; no adapter imports this module.
"""

from __future__ import annotations

import abc
import asyncio
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Protocol, TypedDict, TypeVar, Unpack

import httpx
import msgspec
from litestar import Response, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody, RawBody
from litestar.types import ASGIApp

from providers.base import Clock, PaymentStatus, utcnow

StructT = TypeVar("StructT", bound=msgspec.Struct)


class Faults(msgspec.Struct, kw_only=True):
    """Ways a simulated gateway misbehaves. All rates are fractions in [0, 1]."""

    drop_rate: float = 0.0  # webhooks never sent (every attempt of that notification)
    duplicate_rate: float = 0.0  # webhooks sent twice
    max_delay: float = 0.0  # each webhook waits uniformly 0..max_delay seconds: reorders them
    api_latency: float = 0.0  # seconds added to every status-API answer
    api_error_rate: float = 0.0  # status-API answers replaced by HTTP 503
    api_throttle_rate: float = 0.0  # status-API answers replaced by HTTP 429 + Retry-After
    retry_after: float = 1.0  # the Retry-After (seconds) a throttled answer carries
    wrong_key: bool = False  # sign webhooks with a key the receiver does not hold
    seed: int | None = None


class Delivery(msgspec.Struct, kw_only=True):
    """One webhook attempt, for tests to read back."""

    notification: int
    attempt: int
    status_code: int | None  # None: connection failed or timed out
    accepted: bool


# Build the HTTP request of one notification; called per attempt because some gateways
# (Stripe) sign every attempt anew. The flag asks for a wrong-key signature.
RequestBuilder = Callable[[bool], httpx.Request]
Accepts = Callable[[httpx.Response], bool]


def accepts_2xx(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def post_json(url: str, body: bytes, forged: bytes) -> RequestBuilder:
    """A JSON notification signed once: the same bytes on every attempt; `forged` is signed with a wrong key."""

    def build(wrong_key: bool) -> httpx.Request:
        content = forged if wrong_key else body
        return httpx.Request("POST", url, content=content, headers={"Content-Type": "application/json"})

    return build


class WebhookDispatcher:
    """Sends notifications to one target URL the way a gateway does: async, retried, faulty on demand."""

    def __init__(
        self,
        faults: Faults,
        *,
        retry_delays: Sequence[float] = (0.05, 0.1, 0.2),
        accepts: Accepts = accepts_2xx,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.faults = faults
        self.retry_delays = tuple(retry_delays)
        self.accepts = accepts
        self.rng = random.Random(faults.seed)  # noqa: S311 - simulation, not security
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = 0
        self.deliveries: list[Delivery] = []
        self.dropped: list[int] = []

    def send(self, build: RequestBuilder) -> int:
        """Schedule one notification; returns its number. Must run inside an event loop."""
        self._count += 1
        number = self._count
        if self.rng.random() < self.faults.drop_rate:
            self.dropped.append(number)
            return number
        copies = 2 if self.rng.random() < self.faults.duplicate_rate else 1
        for _ in range(copies):
            delay = self.rng.uniform(0, self.faults.max_delay) if self.faults.max_delay else 0.0
            task = asyncio.create_task(self._deliver(number, build, delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return number

    async def drain(self) -> None:
        """Wait until every scheduled notification is delivered or has used up its retries."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10.0)
        return self._client

    async def _deliver(self, number: int, build: RequestBuilder, delay: float) -> None:
        await asyncio.sleep(delay)
        for attempt, pause in enumerate((0.0, *self.retry_delays), start=1):
            await asyncio.sleep(pause)
            try:
                response = await self._http().send(build(self.faults.wrong_key))
            except httpx.HTTPError:
                self.deliveries.append(Delivery(notification=number, attempt=attempt, status_code=None, accepted=False))
                continue
            ok = self.accepts(response)
            self.deliveries.append(
                Delivery(notification=number, attempt=attempt, status_code=response.status_code, accepted=ok)
            )
            if ok:
                return


async def api_fault(faults: Faults, rng: random.Random) -> Response[bytes] | None:
    """Apply the status-API knobs: maybe wait, maybe answer 503 or 429 instead of the real thing."""
    if faults.api_latency:
        await asyncio.sleep(faults.api_latency)
    if faults.api_error_rate and rng.random() < faults.api_error_rate:
        return Response(b'{"error":"simulated outage"}', status_code=503, media_type="application/json")
    if faults.api_throttle_rate and rng.random() < faults.api_throttle_rate:
        return Response(
            b'{"error":"simulated rate limit"}',
            status_code=429,
            media_type="application/json",
            headers={"Retry-After": f"{faults.retry_after:g}"},
        )
    return None


class SimPayment(msgspec.Struct, frozen=True, kw_only=True):
    """A payment the simulator created: what the shop registers with payrecon."""

    reference: str  # what the gateway will echo (PaymentIntent id, MoMo orderId, vnp_TxnRef)
    provider_data: dict[str, str] = {}  # what the status API needs later (VNPay vnp_create_date)


class SimulatedGateway(Protocol):
    """The face every `providers/<gateway>/simulator.py` shows to tests, benchmarks and the demo."""

    name: str
    faults: Faults
    dispatcher: WebhookDispatcher

    def create_payment(
        self, *, order_id: str, amount: int, currency: str, account: str = "default", reference: str | None = None
    ) -> SimPayment:
        """A new payment in the gateway's initial state; no webhook yet."""

    def set_status(self, reference: str, status: PaymentStatus) -> None:
        """Move the payment to the native state for `status` and notify (through the faults)."""

    def refund(self, reference: str, amount: int) -> None:
        """Refund part or all of a succeeded payment and notify."""

    def replace_faults(self, faults: Faults) -> None:
        """New fault knobs for the API and the webhooks; a seed restarts the random streams."""

    def asgi_app(self) -> ASGIApp:
        """The gateway's status API (same paths, fields, signatures, error codes)."""

    def gateway_config(self, api_base: str) -> dict[str, object]:
        """The PAYRECON_GATEWAYS `[[<gateway>]]` table that lets payrecon talk to this simulator."""


def json_response(obj: Any, status_code: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(obj), status_code=status_code, media_type="application/json")


class StatusIn(msgspec.Struct, kw_only=True):
    """The body of `POST /_sim/payments/{reference}/status` (`SimulatorBase.moves`): a status to move to."""

    status: PaymentStatus


class CreateIn(msgspec.Struct, kw_only=True):
    order_id: str
    amount: int
    currency: str | None = None  # default: the gateway's own currency (`SimulatorBase.currency`)
    account: str = "default"
    reference: str | None = None


class RefundIn(msgspec.Struct, kw_only=True):
    amount: int


class SimOptions(TypedDict, total=False):
    """What every simulator takes besides its own credentials (the registry's factory passes the first three)."""

    webhook_url: str | None  # where its webhooks go; None: sends none
    faults: Faults | None  # how it misbehaves; None: not at all
    client: httpx.AsyncClient | None  # what delivers its webhooks (tests pass a MockTransport's)
    account: str  # the account name of its `gateway_config` table
    clock: Clock  # the gateway's time


class SimulatorBase(abc.ABC):
    """The scaffolding of a `SimulatedGateway`: account, clock, fault knobs, dispatcher, `/_sim/` API.

    A subclass takes its credentials and `**options: Unpack[SimOptions]`, passes those on with its
    delivery rule (`accepts`) and retry schedule to `__init__`, and implements
    the gateway: `create_payment`, `set_status`, `refund`, `gateway_config`, `asgi_app` (serving
    `control_routes(self)` beside the gateway's API), and for the control API `view` and
    `references`; `moves` and `move` when its `/status` body also takes the gateway's native codes.
    """

    name: str  # the gateway's name, as registered
    currency: ClassVar[str | None] = None  # the one currency the gateway takes; None: each payment names it
    moves: ClassVar[type[msgspec.Struct]] = StatusIn  # the body of POST /_sim/payments/{reference}/status
    refund_path: ClassVar[str] = "refund"  # POST /_sim/payments/{reference}/<refund_path>
    conflict_status: ClassVar[int] = 409  # the control API's answer to a change the gateway refuses

    def __init__(
        self, *, retry_delays: Sequence[float], accepts: Accepts = accepts_2xx, **options: Unpack[SimOptions]
    ) -> None:
        unknown = options.keys() - SimOptions.__optional_keys__  # Unpack types them; this refuses a typo at run time
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {sorted(unknown)}")
        faults = options.get("faults")
        self.webhook_url = options.get("webhook_url")
        self.faults = faults if faults is not None else Faults()
        self.dispatcher = WebhookDispatcher(
            self.faults, retry_delays=retry_delays, accepts=accepts, client=options.get("client")
        )
        self.api_rng = random.Random(self.faults.seed)  # noqa: S311 - the status-API knobs' dice, not security
        self.account = options.get("account", "default")
        self.clock = options.get("clock", utcnow)

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def replace_faults(self, faults: Faults) -> None:
        """New fault knobs for the API and the webhooks; a seed restarts both random streams."""
        self.faults = self.dispatcher.faults = faults
        self.api_rng.seed(faults.seed)
        self.dispatcher.rng.seed(faults.seed)

    async def api_fault(self) -> Response[bytes] | None:
        """What each route of the gateway's API asks first: the status-API knobs (`api_fault`)."""
        return await api_fault(self.faults, self.api_rng)

    # --- the gateway (SimulatedGateway) --------------------------------------------------------

    @abc.abstractmethod
    def create_payment(
        self, *, order_id: str, amount: int, currency: str, account: str = "default", reference: str | None = None
    ) -> SimPayment:
        """A new payment in the gateway's initial state; no webhook yet."""

    @abc.abstractmethod
    def set_status(self, reference: str, status: PaymentStatus) -> None:
        """Move the payment to the native state for `status` and notify (through the faults)."""

    @abc.abstractmethod
    def refund(self, reference: str, amount: int) -> None:
        """Refund part or all of a succeeded payment (and notify, if the gateway does)."""

    @abc.abstractmethod
    def gateway_config(self, api_base: str) -> dict[str, object]:
        """The PAYRECON_GATEWAYS `[[<gateway>]]` table that lets payrecon talk to this simulator."""

    @abc.abstractmethod
    def asgi_app(self) -> ASGIApp:
        """The gateway's status API (same paths, fields, signatures, error codes) and `control_routes`."""

    # --- the control API -----------------------------------------------------------------------

    @abc.abstractmethod
    def view(self, reference: str) -> object:
        """The payment as `/_sim/` shows it (JSON-encodable); KeyError (or the gateway's error) if unknown."""

    @abc.abstractmethod
    def references(self) -> Iterable[str]:
        """Every payment the simulator holds, by reference."""

    def move(self, reference: str, order: Any) -> None:
        """Apply a `/status` body (a `moves`); a gateway whose `moves` adds native codes overrides this."""
        self.set_status(reference, order.status)

    def refused(self, error: Exception) -> Response[bytes] | None:
        """The control API's answer to an error of the simulator; None: not a refusal (a bug: 500)."""
        if isinstance(error, KeyError):
            return json_response({"error": str(error.args[0]) if error.args else "not found"}, 404)
        if isinstance(error, ValueError):
            return json_response({"error": str(error)}, self.conflict_status)
        return None


def control_routes(sim: SimulatorBase) -> list[HTTPRouteHandler]:
    """The whole `/_sim/` API of a simulator: its payments (create, list, show, move, refund) and `fault_routes`.

    A body the route cannot read is a 400 before the simulator sees it; the simulator's own
    refusals are answered by `sim.refused`.
    """

    @post("/_sim/payments", status_code=201)
    async def sim_create(body: RawBody) -> Response[bytes]:
        data = _decoded(body, CreateIn)
        if isinstance(data, Response):
            return data
        currency = data.currency or sim.currency
        if currency is None:
            return json_response({"error": "currency is required: this gateway takes several"}, 400)
        return controlled(
            sim,
            lambda: sim.create_payment(
                order_id=data.order_id,
                amount=data.amount,
                currency=currency,
                account=data.account,
                reference=data.reference,
            ),
            201,
        )

    @get("/_sim/payments")
    async def sim_list() -> Response[bytes]:
        return controlled(sim, lambda: [sim.view(reference) for reference in sim.references()])

    @get("/_sim/payments/{reference:str}")
    async def sim_show(reference: FromPath[str]) -> Response[bytes]:
        return controlled(sim, lambda: sim.view(reference))

    @post("/_sim/payments/{reference:str}/status", status_code=200)
    async def sim_status(reference: FromPath[str], body: RawBody) -> Response[bytes]:
        order = _decoded(body, sim.moves)
        if isinstance(order, Response):
            return order

        def move() -> object:
            sim.move(reference, order)
            return sim.view(reference)

        return controlled(sim, move)

    @post(f"/_sim/payments/{{reference:str}}/{sim.refund_path}", status_code=200)
    async def sim_refund(reference: FromPath[str], body: RawBody) -> Response[bytes]:
        data = _decoded(body, RefundIn)
        if isinstance(data, Response):
            return data

        def refund() -> object:
            sim.refund(reference, data.amount)
            return sim.view(reference)

        return controlled(sim, refund)

    return [sim_create, sim_list, sim_show, sim_status, sim_refund, *fault_routes(sim)]


def controlled(sim: SimulatorBase, action: Callable[[], object], status_code: int = 200) -> Response[bytes]:
    """A control action's result as JSON, or the simulator's refusal (`SimulatorBase.refused`)."""
    try:
        result = action()
    except Exception as error:
        answer = sim.refused(error)
        if answer is None:
            raise
        return answer
    return json_response(result, status_code)


def _decoded(body: bytes, into: type[StructT]) -> StructT | Response[bytes]:
    try:
        return msgspec.json.decode(body, type=into)
    except msgspec.MsgspecError as error:
        return json_response({"error": f"bad request body: {error}"}, 400)


def fault_routes(sim: SimulatedGateway) -> list[HTTPRouteHandler]:
    """The `/_sim/` routes every simulator's app serves alike: read and replace the faults, read deliveries."""

    @get("/_sim/faults")
    async def read_faults() -> Faults:
        return sim.faults

    @put("/_sim/faults")
    async def replace_faults(data: JSONBody[Faults]) -> Faults:
        sim.replace_faults(data)
        return sim.faults

    @get("/_sim/deliveries")
    async def deliveries() -> dict[str, list[Delivery] | list[int]]:
        return {"deliveries": sim.dispatcher.deliveries, "dropped": sim.dispatcher.dropped}

    return [read_faults, replace_faults, deliveries]
