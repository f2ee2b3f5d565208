"""What every gateway simulator shares: fault knobs and webhook delivery with retries.

Simulators alone may import litestar; no adapter imports this module.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Protocol

import httpx
import msgspec
from litestar import Response, get, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody
from litestar.types import ASGIApp

from providers.base import PaymentStatus


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
