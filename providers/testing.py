"""The contract kit: the whole battery of checks for a registered gateway, for adapter authors.

Subclass `GatewayContract` in a test module and name your gateway; pytest collects every check:

    from providers.testing import GatewayContract

    class TestZaloPayContract(GatewayContract):
        gateway = "zalopay"

The gateway is taken from the registry (`payrecon.gateways`), so this also proves it is installed
and registered. Everything runs against the gateway's own simulator, in memory or over HTTP
through httpx's ASGI transport; nothing here needs PostgreSQL, Redis or payrecon's service.

What it checks:
- registration: name, account type, the three parts' protocols, the simulator's own account table;
- signatures: a delivery the simulator signs verifies and parses; one signed with a wrong key is a
  SignatureError; a tampered one (every single byte flipped in turn, up to `tamper_limit`) is
  refused, or says exactly what the original said;
- events: well formed (integer amounts, upper-case currency, aware times), and a redelivery is
  the same event (same dedupe key), whose key names the gateway and the account;
- answers: acknowledgements are accepted by the gateway's own delivery rule, rejections and
  retry_later are not (in-band retry codes included), and no rejection is a 5xx;
- documented codes: every code of the gateway's code tables maps (`code_tables`);
- status API: the simulator's payment, asked through the status client over HTTP, comes back in
  the state it is in, with an account-scoped dedupe key; an unknown payment is None;
- the simulator's `/_sim/` control API: create, show, list, move a payment; unknown 404, bad
  body 400; fault knobs and deliveries;
- fuzzing over HTTP: mutated deliveries posted to a minimal webhook endpoint built from the
  adapter alone (verify → parse → acknowledge / reject) never make it crash: no 500, only
  declared errors.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast
from urllib.parse import quote_from_bytes

import httpx
import msgspec
import pytest

from providers import Ack, GatewayAdapter, OutcomeKind, PaymentEvent, PaymentStatus, StatusQuery, WebhookRequest
from providers.base import utcnow
from providers.codes import Code
from providers.errors import GatewayError, MalformedError, SignatureError
from providers.gateway import Connected, EventsFeed, Gateway, StatusClient
from providers.http import RetryPolicy
from providers.registry import gateways
from providers.simkit import Faults, SimulatedGateway

WEBHOOK_URL = "http://payrecon.test/webhooks/{name}"
API_BASE = "http://gateway.test"
URL_SAFE = "!$&'()*+,-./:;=?@_~%"
DECLARED = (SignatureError, MalformedError, GatewayError)


class Rig(msgspec.Struct, kw_only=True):
    """A gateway, connected to the account of its simulator, and the simulator's captured webhooks."""

    gateway: Gateway
    connected: Connected
    sim: SimulatedGateway
    captured: list[httpx.Request]
    api: httpx.AsyncClient  # reaches the simulator's status API


def as_webhook(request: httpx.Request, *, body: bytes | None = None, query: str | None = None) -> WebhookRequest:
    """An HTTP request as payrecon's webhook endpoint hands it to an adapter."""
    return WebhookRequest(
        method=request.method,
        body=request.content if body is None else body,
        headers={name.lower(): value for name, value in request.headers.items()},
        query_string=request.url.query.decode("latin-1") if query is None else query,
        received_at=utcnow(),
    )


def as_response(ack: Ack) -> httpx.Response:
    headers = {"content-type": ack.content_type} if ack.content_type else {}
    return httpx.Response(ack.status_code, content=ack.body, headers=headers)


def webhook_app(adapter: GatewayAdapter) -> Callable[..., Any]:
    """A minimal ASGI webhook endpoint: what payrecon's ingest does, minus the ledger.

    An exception the adapter did not declare becomes a 500, which the fuzzing test forbids.
    """

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = WebhookRequest(
            method=scope["method"],
            body=body,
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            query_string=scope["query_string"].decode("latin-1"),
            received_at=utcnow(),
        )
        try:
            adapter.verify(request)
            events = adapter.parse(request)
            ack = adapter.acknowledge([OutcomeKind.APPLIED] * len(events))
        except DECLARED as error:
            ack = adapter.reject(error)
        except Exception:  # an adapter bug: the fuzzing test fails on this answer
            ack = Ack(500, b"adapter crashed")
        headers = [(b"content-type", ack.content_type.encode())] if ack.content_type else []
        await send({"type": "http.response.start", "status": ack.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": ack.body})

    return app


class GatewayContract:
    """The battery. Set `gateway`; override the class variables where your gateway differs."""

    gateway: ClassVar[str]
    amount: ClassVar[int] = 150_000  # a payment the simulator accepts
    currency: ClassVar[str] = "VND"
    # Every documented code table of the gateway: each code must map to a Code.
    code_tables: ClassVar[Mapping[str, Mapping[Any, Code]]] = {}
    tamper_limit: ClassVar[int] = 400  # bytes of signed material flipped one by one
    fuzz_examples: ClassVar[int] = 200

    def asks_for_redelivery(self, response: httpx.Response) -> bool | None:
        """For a gateway that reads the answer's body rather than its HTTP status (VNPay's RspCode
        99 over HTTP 200): whether `response` asks for a redelivery. None: the HTTP status decides."""
        return None

    # --- fixtures ----------------------------------------------------------------------------------

    @pytest.fixture
    async def rig(self) -> AsyncIterator[Rig]:
        rig = self._rig()
        try:
            yield rig
        finally:
            await rig.sim.dispatcher.aclose()
            await rig.api.aclose()

    def _rig(self, *, wrong_key: bool = False) -> Rig:
        gateway = gateways()[self.gateway]
        captured: list[httpx.Request] = []
        holder: list[GatewayAdapter] = []

        def receive(request: httpx.Request) -> httpx.Response:
            captured.append(request)
            return as_response(holder[0].acknowledge([OutcomeKind.APPLIED]))

        sim = gateway.simulator(
            webhook_url=WEBHOOK_URL.format(name=self.gateway),
            faults=Faults(wrong_key=wrong_key),
            client=httpx.AsyncClient(transport=httpx.MockTransport(receive)),
        )
        account = msgspec.convert(sim.gateway_config(API_BASE), gateway.account)
        connected = gateway.connect([account], retry=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0))
        holder.append(connected.adapter)
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, sim.asgi_app())), base_url=API_BASE)
        return Rig(gateway=gateway, connected=connected, sim=sim, captured=captured, api=api)

    async def paid(self, rig: Rig, order_id: str = "ord_contract_1") -> str:
        """A payment the simulator moved to succeeded, its webhook captured; returns its reference."""
        payment = rig.sim.create_payment(order_id=order_id, amount=self.amount, currency=self.currency)
        rig.sim.set_status(payment.reference, PaymentStatus.SUCCEEDED)
        await rig.sim.dispatcher.drain()
        assert rig.captured, f"{self.gateway} simulator sent no webhook for a succeeded payment"
        return payment.reference

    # --- registration ------------------------------------------------------------------------------

    def test_registered(self) -> None:
        gateway = gateways()[self.gateway]
        assert gateway.name == self.gateway
        assert gateway.account.gateway == self.gateway, "the account type names another gateway"
        assert gateway.account.credentials, "declare the account's credential fields (they must not be empty)"

    async def test_parts_satisfy_their_protocols(self, rig: Rig) -> None:
        assert isinstance(rig.connected.adapter, GatewayAdapter)
        assert isinstance(rig.connected.status, StatusClient)
        assert rig.connected.events is None or isinstance(rig.connected.events, EventsFeed)
        assert list(rig.connected.accounts) == ["default"]

    # --- signatures and events ---------------------------------------------------------------------

    async def test_simulator_signed_webhook_verifies_and_parses(self, rig: Rig) -> None:
        reference = await self.paid(rig)
        delivery = as_webhook(rig.captured[-1])
        rig.connected.adapter.verify(delivery)
        events = rig.connected.adapter.parse(delivery)
        assert events, "a succeeded payment's webhook parsed into no event"
        for event in events:
            assert (event.provider, event.account, event.reference) == (self.gateway, "default", reference)
            assert event.status is PaymentStatus.SUCCEEDED
            assert type(event.amount) is int
            assert event.amount == self.amount
            assert event.currency == self.currency.upper()
            assert event.refunded_amount is None or type(event.refunded_amount) is int
            assert event.occurred_at is None or event.occurred_at.utcoffset() is not None
            assert event.dedupe_key.startswith(f"{self.gateway}:default:"), "dedupe keys name gateway and account"
        # a redelivery is the same statement: the ledger dedupes on this key
        assert [e.dedupe_key for e in rig.connected.adapter.parse(delivery)] == [e.dedupe_key for e in events]

    async def test_wrong_key_is_a_signature_error(self, rig: Rig) -> None:
        forged = self._rig(wrong_key=True)
        try:
            await self.paid(forged)
            with pytest.raises(SignatureError):
                rig.connected.adapter.verify(as_webhook(forged.captured[0]))
        finally:
            await forged.sim.dispatcher.aclose()
            await forged.api.aclose()

    async def test_tampering_never_changes_what_payrecon_hears(self, rig: Rig) -> None:
        # Every single byte of the signed material flipped in turn: the delivery is refused, or
        # (a byte no signature covers, such as the name of an empty optional field) it still says
        # exactly what the original said.
        await self.paid(rig)
        original = rig.captured[-1]
        adapter = rig.connected.adapter
        heard = _statements(adapter.parse(as_webhook(original)))
        body, query = original.content, original.url.query.decode("latin-1")
        tampered = [as_webhook(original, body=_flip(body, at)) for at in range(min(len(body), self.tamper_limit))]
        tampered += [
            as_webhook(original, query=_flip(query.encode("latin-1"), at).decode("latin-1"))
            for at in range(min(len(query), self.tamper_limit))
        ]
        for delivery in tampered:
            try:
                adapter.verify(delivery)
                events = adapter.parse(delivery)
            except DECLARED:
                continue
            assert _statements(events) == heard, (delivery.body, delivery.query_string)

    def test_garbage_is_a_declared_error(self) -> None:
        adapter = self._rig().connected.adapter
        junk = WebhookRequest(method="POST", body=b"\x00junk", headers={}, query_string="", received_at=utcnow())
        with pytest.raises(DECLARED):
            adapter.verify(junk)

    # --- answers -----------------------------------------------------------------------------------

    async def test_answers_are_read_by_the_gateway_as_intended(self, rig: Rig) -> None:
        adapter, accepts = rig.connected.adapter, rig.sim.dispatcher.accepts
        for outcomes in ([OutcomeKind.APPLIED], [OutcomeKind.DUPLICATE], [OutcomeKind.IGNORED], []):
            ack = adapter.acknowledge(outcomes)
            assert 200 <= ack.status_code < 300, (outcomes, ack)
        assert accepts(as_response(adapter.acknowledge([OutcomeKind.APPLIED])))
        for error in (SignatureError("bad signature"), MalformedError("not JSON")):
            rejection = adapter.reject(error)
            assert rejection.status_code < 500, rejection  # the sender's fault, not ours
            assert not accepts(as_response(rejection))
        retry = as_response(adapter.retry_later())
        assert not accepts(retry), "retry_later would not make the gateway deliver again"
        in_band = self.asks_for_redelivery(retry)
        if in_band is None:
            assert not 200 <= retry.status_code < 300
        else:
            assert in_band, "retry_later's body does not ask for a redelivery"

    def test_documented_codes_map(self) -> None:
        for table, codes in self.code_tables.items():
            assert codes, f"code table {table} is empty"
            for code, meaning in codes.items():
                assert isinstance(meaning, Code), (table, code)
                assert meaning.status is None or isinstance(meaning.status, PaymentStatus), (table, code)

    # --- status API --------------------------------------------------------------------------------

    def query(self, reference: str, provider_data: Mapping[str, Any], order_id: str = "ord_contract_1") -> StatusQuery:
        return StatusQuery(
            order_id=order_id,
            account="default",
            reference=reference,
            amount=self.amount,
            currency=self.currency.upper(),
            created_at=utcnow() - timedelta(minutes=5),
            provider_data=dict(provider_data),
        )

    async def test_status_round_trip_against_the_simulator(self, rig: Rig) -> None:
        for order_id, state in (("ord_contract_s", PaymentStatus.SUCCEEDED), ("ord_contract_f", PaymentStatus.FAILED)):
            payment = rig.sim.create_payment(order_id=order_id, amount=self.amount, currency=self.currency)
            rig.sim.set_status(payment.reference, state)
            event = await rig.connected.status.fetch_status(
                self.query(payment.reference, payment.provider_data, order_id), rig.api
            )
            assert event is not None
            assert (event.provider, event.account, event.reference) == (self.gateway, "default", payment.reference)
            assert event.status is state
            assert event.amount == self.amount
            assert isinstance(event.occurred_at, datetime)
            assert event.dedupe_key.startswith(f"{self.gateway}:default:")
            again = await rig.connected.status.fetch_status(
                self.query(payment.reference, payment.provider_data, order_id), rig.api
            )
            assert again is not None
            assert again.dedupe_key == event.dedupe_key  # the same answer again: a duplicate

    async def test_unknown_payment_is_none(self, rig: Rig) -> None:
        known = rig.sim.create_payment(order_id="ord_contract_k", amount=self.amount, currency=self.currency)
        unknown = self.query("ord_contract_nobody", known.provider_data, order_id="ord_contract_nobody")
        assert await rig.connected.status.fetch_status(unknown, rig.api) is None

    # --- the simulator's control API ---------------------------------------------------------------

    async def test_control_api_drives_the_simulator(self, rig: Rig) -> None:
        # `payrecon simulate` users and the demo drive every simulator through the same /_sim/ routes.
        made = await rig.api.post(
            "/_sim/payments", json={"order_id": "ord_contract_c", "amount": self.amount, "currency": self.currency}
        )
        assert made.status_code == 201, made.text
        reference = made.json()["reference"]
        assert (await rig.api.get(f"/_sim/payments/{reference}")).status_code == 200
        listed = await rig.api.get("/_sim/payments")
        assert listed.status_code == 200
        assert len(listed.json()) == 1
        moved = await rig.api.post(f"/_sim/payments/{reference}/status", json={"status": "succeeded"})
        assert moved.status_code == 200, moved.text
        await rig.sim.dispatcher.drain()
        assert rig.captured, "moving a payment to succeeded over /_sim/ sent no webhook"
        assert (await rig.api.get("/_sim/payments/ord_contract_nobody")).status_code == 404
        assert (await rig.api.post(f"/_sim/payments/{reference}/status", content=b"{not json")).status_code == 400
        assert (await rig.api.put("/_sim/faults", json={"drop_rate": 0.5, "seed": 7})).status_code == 200
        assert rig.sim.faults.drop_rate == rig.sim.dispatcher.faults.drop_rate == 0.5
        assert (await rig.api.get("/_sim/faults")).json()["seed"] == 7
        deliveries = (await rig.api.get("/_sim/deliveries")).json()
        assert [d["accepted"] for d in deliveries["deliveries"]] == [True]

    # --- fuzzing over HTTP -------------------------------------------------------------------------

    async def test_mutated_deliveries_over_http_never_crash_the_adapter(self, rig: Rig) -> None:
        await self.paid(rig)
        original = rig.captured[-1]
        headers = {k: v for k, v in original.headers.items() if k.lower() not in ("content-length", "host")}
        rng = random.Random(f"{self.gateway}-contract")  # noqa: S311 - reproducible fuzzing, not security
        transport = httpx.ASGITransport(app=webhook_app(rig.connected.adapter))
        async with httpx.AsyncClient(transport=transport, base_url="http://payrecon.test") as http:
            for _ in range(self.fuzz_examples):
                body = mutate(original.content, rng) if rng.random() < 0.7 else original.content
                query = mutate(original.url.query, rng) if rng.random() < 0.5 else original.url.query
                # a mutation may leave bytes a URL cannot carry raw: send them percent-encoded
                url = f"{original.url.path}?{quote_from_bytes(query, safe=URL_SAFE)}"
                response = await http.request(original.method, url, content=body, headers=headers)
                assert response.status_code != 500, (body, query, response.content)


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _statements(events: list[PaymentEvent]) -> list[tuple[Any, ...]]:
    """What payrecon believes from events: everything but the raw payload kept for audit."""
    return [msgspec.structs.astuple(msgspec.structs.replace(e, payload={})) for e in events]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few byte-level edits of a valid delivery: flips, cuts, insertions, deep nesting."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["flip", "cut", "insert", "nest"])
        at = rng.randint(0, max(0, len(out) - 1))
        if kind == "flip" and out:
            out[at] ^= rng.randint(1, 255)
        elif kind == "cut" and out:
            del out[at : at + rng.randint(1, 8)]
        elif kind == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        else:
            out[at:at] = b"[" * 5000  # a RecursionError inside a JSON decoder must be a malformed body
    return bytes(out)
