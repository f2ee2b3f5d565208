"""`payrecon webhook-endpoints …` over a real database, and `payrecon listen` forwarding to a shop."""

from __future__ import annotations

import asyncio
import contextlib
import json

import asyncpg

from providers.base import PaymentStatus
from service import ledger
from service.model import Source
from service.notify import signing
from service.notify.listen import listen
from tests.notify.shop import Shop
from tests.service.test_apikeys import payrecon
from tests.service.test_ledger import event, register


async def test_endpoints_from_the_command_line(database_url: str, pool: asyncpg.Pool) -> None:
    code, out, err = await payrecon(
        database_url,
        "webhook-endpoints",
        "create",
        "--url",
        "https://shop.example/h",
        "--event-type",
        "order.succeeded",
    )
    assert code == 0, err
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    assert await pool.fetchval("select secret from webhook_secrets") == secret

    code, out, _ = await payrecon(database_url, "webhook-endpoints", "list", "--json")
    listed = json.loads(out)
    assert [(e["id"], e["url"], e["event_types"], e["enabled"]) for e in listed] == [
        (1, "https://shop.example/h", ["order.succeeded"], True)
    ]
    assert "whsec_" not in out

    assert (await payrecon(database_url, "webhook-endpoints", "disable", "1"))[0] == 0
    assert await pool.fetchval("select enabled from webhook_endpoints where id = 1") is False
    code, out, _ = await payrecon(database_url, "webhook-endpoints", "rotate-secret", "1", "--overlap", "60")
    assert code == 0
    assert out.strip().splitlines()[-1] not in (secret, "")
    assert await pool.fetchval("select count(*) from webhook_secrets where expires_at is not null") == 1
    code, _, err = await payrecon(database_url, "webhook-endpoints", "enable", "99")
    assert code != 0
    assert "no webhook endpoint 99" in err
    code, _, err = await payrecon(database_url, "webhook-endpoints", "create", "--url", "ftp://x")
    assert code != 0
    assert "--url" in err


async def test_listen_prints_and_forwards_each_notification_signed(pool: asyncpg.Pool) -> None:
    await register(pool)  # committed before listening: not forwarded
    secret = signing.new_secret()
    shop = Shop([secret])
    lines: list[str] = []
    stop = asyncio.Event()
    async with shop.up():
        task = asyncio.create_task(
            listen(pool, forward_to=shop.url, secret=secret, event_types=frozenset(), echo=lines.append, stop=stop)
        )
        await asyncio.sleep(0.3)  # listening from now on
        await ledger.apply(pool, event(PaymentStatus.PROCESSING), Source.WEBHOOK)
        await ledger.apply(pool, event(PaymentStatus.SUCCEEDED), Source.WEBHOOK)
        async with asyncio.timeout(20):
            while len(shop.received) < 2:  # noqa: ASYNC110 (the shop is fed by another task)
                await asyncio.sleep(0.05)
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [r.payload["type"] for r in shop.received] == ["order.processing", "order.succeeded"]
    assert all(r.acknowledged for r in shop.received)
    assert len(lines) == 2
    assert "order.succeeded" in lines[1]
    assert lines[1].endswith("ms)")
    assert "→ 204" in lines[1]
