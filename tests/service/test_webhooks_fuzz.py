"""Fuzzing the webhook endpoints over real HTTP: random and mutated deliveries never get a 500.

Every example is one request to the running app, judged against an oracle: the adapter's own
verdict on the same bytes. A delivery the adapter refuses gets exactly one rejected_deliveries
row with that error's reason and the adapter's rejection status (never taken as "delivered" by
the gateway); one that a mutation left valid reaches the ledger and leaves no row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.base import PaymentStatus, WebhookRequest, utcnow
from service.app import settings_with
from service.ingest import reason_of
from service.settings import Settings
from tests.e2e.harness import Running, momo_webhook, rejected, rejected_count, running, stripe_webhook, vnpay_webhook

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MAX_BODY = 2048

# What a client can put in a header value: visible ASCII, no leading or trailing space (h11 refuses).
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120).map(str.strip)
# Framing headers are the HTTP client's to write: a compliant client refuses to send a forged
# Content-Length, so fuzzing them tests httpx, not us (hypothesis found "content-length").
FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "te", "trailer"}
header_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20).filter(lambda n: n not in FRAMING)
junk_headers = st.dictionaries(header_names, printable, max_size=4)
accounts = st.sampled_from([None, "default", "other", "%00", "a" * 200])


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Running]:
    # Every refusal is stored here (a bucket no fuzz run empties): the test reads each verdict from its
    # row. Sampling is test_refusal_sampler.py's and test_webhook_edge.py's subject.
    unsampled = {"refusal_sample_rate": 1e6, "refusal_sample_burst": 10**6, "refusal_sample_total": 1e6}
    async with running(settings_with(settings, webhook_max_body=MAX_BODY, **unsampled)) as found:
        yield found


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """A few byte-level edits of a valid delivery: flips, cuts, insertions, whitespace."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "space", "truncate"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "cut" and out:
            del out[at : at + draw(st.integers(1, 8))]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "space":
            out[at:at] = b" "
        else:
            out = out[:at]
    return bytes(out)


def path(provider: str, account: str | None) -> str:
    return f"/webhooks/{provider}" if account is None else f"/webhooks/{provider}/{account}"


def expected_refusal(app: Running, provider: str, request: httpx.Request, account: str | None) -> Exception | None:
    """The oracle: what the adapter itself says of this delivery (None: it verifies and parses)."""
    adapter = app.app.state.gateways[provider].adapter
    delivery = WebhookRequest(
        method=request.method,
        body=request.content,
        headers={name.lower(): value for name, value in request.headers.items()},
        query_string=request.url.query.decode("latin-1"),
        account=account,
        received_at=utcnow(),
    )
    try:
        adapter.verify(delivery)
        adapter.parse(delivery)
    except Exception as error:
        return error
    return None


async def check(app: Running, pool: asyncpg.Pool, provider: str, request: httpx.Request, account: str | None) -> None:
    refusal = expected_refusal(app, provider, request, account)
    before = await rejected_count(pool)
    response = await app.http.send(request)
    rows = (await rejected(pool))[before:]

    assert response.status_code < 500, response.text
    if len(request.content) > MAX_BODY:
        assert response.status_code == 413
        assert [row["reason"] for row in rows] == ["body_too_large"]
    elif refusal is not None:
        assert [row["reason"] for row in rows] == [reason_of(refusal)], refusal
        assert response.status_code == app.app.state.gateways[provider].adapter.reject(refusal).status_code
        assert not app.sims[provider].dispatcher.accepts(response)
    else:  # the mutation left a valid delivery: it went to the ledger and was answered, no row
        assert rows == []


def build(
    app: Running, method: str, url: str, *, content: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Request:
    return app.http.build_request(method, url, content=content, headers=headers)


class Seeds(msgspec.Struct, kw_only=True):
    """One valid delivery per gateway (a failed payment, so the ledger's answer is harmless)."""

    stripe: tuple[bytes, dict[str, str]]
    momo: bytes
    vnpay: str


@pytest.fixture
def seeds(app: Running) -> Seeds:
    stripe, momo, vnpay = app.sims["stripe"], app.sims["momo"], app.sims["vnpay"]
    stripe.set_status(
        stripe.create_payment(order_id="ord_fz", amount=990, currency="eur").reference, PaymentStatus.FAILED
    )
    for sim, amount in ((momo, 75_000), (vnpay, 120_000)):
        sim.create_payment(order_id="ord_fz", amount=amount, currency="VND")
        sim.set_status("ord_fz", PaymentStatus.FAILED)
    # Stripe's signature is good for 5 minutes: far longer than this test runs.
    return Seeds(stripe=stripe_webhook(stripe), momo=momo_webhook(momo, "ord_fz"), vnpay=vnpay_webhook(vnpay, "ord_fz"))


@FUZZ
@given(data=st.data(), account=accounts, extra=junk_headers)
async def test_stripe_random_and_mutated(
    app: Running, pool: asyncpg.Pool, seeds: Seeds, data: st.DataObject, account: str | None, extra: dict[str, str]
) -> None:
    body, headers = seeds.stripe
    choice = data.draw(st.sampled_from(["random", "mutated_body", "mutated_header", "no_header"]))
    sent_body, sent_headers = body, dict(headers)
    if choice == "random":
        sent_body = data.draw(st.binary(max_size=3000))
        sent_headers["Stripe-Signature"] = data.draw(printable)
    elif choice == "mutated_body":
        sent_body = mutate(body, data.draw)
    elif choice == "mutated_header":
        mutated = mutate(headers["Stripe-Signature"].encode(), data.draw).decode("ascii", "replace")
        sent_headers["Stripe-Signature"] = "".join(c if " " <= c <= "~" else "?" for c in mutated).strip()
    else:
        del sent_headers["Stripe-Signature"]
    request = build(app, "POST", path("stripe", account), content=sent_body, headers={**extra, **sent_headers})
    await check(app, pool, "stripe", request, account)


MOMO_JSON = r'\{("[a-zA-Z]{1,12}":(-?[0-9]{1,20}|"[^"\\]{0,20}"|null|true),?){0,14}\}'


@FUZZ
@given(data=st.data(), account=accounts, extra=junk_headers)
async def test_momo_random_and_mutated(
    app: Running, pool: asyncpg.Pool, seeds: Seeds, data: st.DataObject, account: str | None, extra: dict[str, str]
) -> None:
    choice = data.draw(st.sampled_from(["random", "json", "mutated"]))
    if choice == "random":
        sent = data.draw(st.binary(max_size=3000))
    elif choice == "json":
        sent = data.draw(st.from_regex(MOMO_JSON, fullmatch=True)).encode()
    else:
        sent = mutate(seeds.momo, data.draw)
    headers = {**extra, "Content-Type": "application/json"}
    await check(app, pool, "momo", build(app, "POST", path("momo", account), content=sent, headers=headers), account)


QUERY_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#")


@FUZZ
@given(data=st.data(), account=accounts)
async def test_vnpay_random_and_mutated(
    app: Running, pool: asyncpg.Pool, seeds: Seeds, data: st.DataObject, account: str | None
) -> None:
    query = seeds.vnpay
    choice = data.draw(st.sampled_from(["random", "mutated", "percent", "form_post"]))
    method, content, sent = "GET", b"", query
    if choice == "random":
        sent = data.draw(st.text(QUERY_CHARS, max_size=400))
    elif choice == "mutated":
        sent = mutate(query.encode(), data.draw).decode("ascii", "ignore")
    elif choice == "percent":  # invalid UTF-8 and broken escapes where a value is
        odd = data.draw(st.sampled_from(["%ff", "%", "%zz", "%C3", "%00"]))
        sent = query.replace("vnp_BankCode=", "vnp_BankCode=" + odd)
    else:
        method, content, sent = "POST", mutate(query.encode(), data.draw), ""
    sent = "".join(c for c in sent if " " < c <= "~" and c != "#")
    url = path("vnpay", account) + (f"?{sent}" if sent else "")
    await check(app, pool, "vnpay", build(app, method, url, content=content), account)
