"""The adapter contract, checked for every gateway registered under `payrecon.providers`.

Each adapter is checked against its own simulator: a webhook the simulator signs and sends
(captured off the wire) verifies and parses into well-formed events; one signed with a wrong
key is refused; and the answers the adapter gives are read the way the gateway reads them
(the simulator dispatcher's own `accepts` rule).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
import msgspec
import pytest

from providers.base import Ack, GatewayAccount, GatewayAdapter, OutcomeKind, PaymentStatus, WebhookRequest, utcnow
from providers.errors import MalformedError, SignatureError
from providers.registry import adapter_classes
from providers.simkit import Faults, SimulatedGateway
from tests.gateways import adapters_for, sim_api_bases, simulator

NAMES = sorted(adapter_classes())
WEBHOOK_URL = "http://payrecon.test/webhooks/{name}"

# Gateways that read the answer's body rather than its HTTP status, and the body that asks
# them to deliver again (reference/vnpay.md §5: VNPay retries RspCode 99, over HTTP 200).
IN_BAND_RETRY: dict[str, Callable[[httpx.Response], bool]] = {
    "vnpay": lambda response: response.status_code == 200 and response.json().get("RspCode") == "99",
}


class Pair(msgspec.Struct, kw_only=True):
    name: str
    adapter: GatewayAdapter
    sim: SimulatedGateway
    captured: list[httpx.Request]


def as_response(ack: Ack) -> httpx.Response:
    headers = {"content-type": ack.content_type} if ack.content_type else {}
    return httpx.Response(ack.status_code, content=ack.body, headers=headers)


def as_webhook(request: httpx.Request) -> WebhookRequest:
    return WebhookRequest(
        method=request.method,
        body=request.content,
        headers={name.lower(): value for name, value in request.headers.items()},
        query_string=request.url.query.decode("latin-1"),
        account=None,
        received_at=utcnow(),
    )


async def make_pair(name: str, *, wrong_key: bool = False) -> Pair:
    """The adapter and its simulator, the simulator's webhooks captured by an in-memory transport."""
    captured: list[httpx.Request] = []
    holder: dict[str, GatewayAdapter] = {}

    def receive(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return as_response(holder["adapter"].acknowledge([OutcomeKind.APPLIED]))

    client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    sim = simulator(name, webhook_url=WEBHOOK_URL.format(name=name), faults=Faults(wrong_key=wrong_key), client=client)
    holder["adapter"] = adapters_for({name: sim}, sim_api_bases((name,)))[name]
    return Pair(name=name, adapter=holder["adapter"], sim=sim, captured=captured)


@pytest.fixture(params=NAMES)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    found = await make_pair(request.param)
    yield found
    await found.sim.dispatcher.aclose()


async def pay(pair: Pair, order_id: str = "ord_contract_1") -> str:
    payment = pair.sim.create_payment(order_id=order_id, amount=150_000, currency="VND")
    pair.sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)
    await pair.sim.dispatcher.drain()
    assert pair.captured, f"{pair.name} simulator sent no webhook for a succeeded payment"
    return payment.reference


def test_every_builtin_gateway_is_registered() -> None:
    assert {"stripe", "momo", "vnpay"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_adapter_class_satisfies_the_protocol(name: str) -> None:
    cls = adapter_classes()[name]
    assert cls.name == name
    assert issubclass(cls.Account, GatewayAccount)
    for method in ("verify", "parse", "acknowledge", "reject", "retry_later", "fetch_status"):
        assert callable(getattr(cls, method, None)), f"{name} adapter lacks {method}"


async def test_adapter_instance_is_a_gateway_adapter(pair: Pair) -> None:
    assert isinstance(pair.adapter, GatewayAdapter)


async def test_simulator_signed_webhook_verifies_and_parses(pair: Pair) -> None:
    reference = await pay(pair)
    delivery = as_webhook(pair.captured[-1])

    pair.adapter.verify(delivery)
    events = pair.adapter.parse(delivery)

    assert events, f"{pair.name}: a succeeded payment's webhook parsed into no event"
    for event in events:
        assert event.provider == pair.name
        assert event.account == "default"
        assert event.reference == reference
        assert event.status is PaymentStatus.SUCCEEDED
        assert type(event.amount) is int
        assert event.amount == 150_000
        assert event.currency == "VND"
        assert event.currency.isupper()
        assert event.dedupe_key
        assert event.refunded_amount is None or type(event.refunded_amount) is int
        if event.occurred_at is not None:
            assert isinstance(event.occurred_at, datetime)
            assert event.occurred_at.utcoffset() is not None
    # A redelivery of the same notification is the same event: the ledger dedupes on this key.
    assert [e.dedupe_key for e in pair.adapter.parse(delivery)] == [e.dedupe_key for e in events]


async def test_wrong_key_webhook_raises_signature_error(pair: Pair) -> None:
    forged = await make_pair(pair.name, wrong_key=True)
    try:
        await pay(forged)
        delivery = as_webhook(forged.captured[0])
        with pytest.raises(SignatureError):
            pair.adapter.verify(delivery)
    finally:
        await forged.sim.dispatcher.aclose()


async def test_garbage_raises_a_declared_error(pair: Pair) -> None:
    junk = WebhookRequest(method="POST", body=b"\x00junk", headers={}, query_string="", received_at=utcnow())
    with pytest.raises((SignatureError, MalformedError)):
        pair.adapter.verify(junk)


async def test_answers_are_read_by_the_gateway_as_intended(pair: Pair) -> None:
    accepts = pair.sim.dispatcher.accepts
    for outcomes in ([OutcomeKind.APPLIED], [OutcomeKind.DUPLICATE], [OutcomeKind.IGNORED], []):
        ack = pair.adapter.acknowledge(outcomes)
        assert isinstance(ack, Ack)
        assert 200 <= ack.status_code < 300, (pair.name, outcomes, ack)
    assert accepts(as_response(pair.adapter.acknowledge([OutcomeKind.APPLIED])))

    for error in (SignatureError("bad signature"), MalformedError("not JSON")):
        rejection = pair.adapter.reject(error)
        assert isinstance(rejection, Ack)
        assert rejection.status_code < 500, (pair.name, rejection)  # the sender's fault, not ours
        assert not accepts(as_response(rejection))

    retry = pair.adapter.retry_later()
    assert isinstance(retry, Ack)
    assert not accepts(as_response(retry)), f"{pair.name} would not redeliver after retry_later"
    in_band = IN_BAND_RETRY.get(pair.name)
    if in_band is None:
        assert not 200 <= retry.status_code < 300, (pair.name, retry)
    else:
        assert in_band(as_response(retry)), (pair.name, retry)
