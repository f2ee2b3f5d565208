"""migrations/0030: stored dedupe keys gain the account, in the format providers/answers.py builds."""

from __future__ import annotations

import asyncpg

from providers.answers import dedupe_key
from service import migrate

OLD_AND_NEW = [
    # (provider, account, key stored before 0030, the key the adapters build now)
    ("stripe", "default", "evt_3PRc0001SucceededVND", dedupe_key("stripe", "default", "evt_3PRc0001SucceededVND")),
    ("stripe", "eu", "stripe:status:pi_1:succeeded:pi_1:0", "stripe:eu:status:pi_1:succeeded:pi_1:0"),
    ("momo", "default", "momo:4088878653:0", dedupe_key("momo", "default", 4088878653, 0)),
    ("vnpay", "terminal_a", "vnpay:1001:0:24:02", dedupe_key("vnpay", "terminal_a", "1001", "0", "24", "02")),
    ("vnpay", "terminal_b", "vnpay:1001:0:24:02", dedupe_key("vnpay", "terminal_b", "1001", "0", "24", "02")),
]


async def test_stored_keys_are_rewritten_with_their_account(pool: asyncpg.Pool) -> None:
    (sql,) = [m.sql for m in migrate.available() if m.version == "0030_account_dedupe_keys"]
    async with pool.acquire() as conn, conn.transaction():
        # Before 0030 the two terminals' keys were one; here they sit in two rows only because
        # the rows are written as 0030 found them in databases where just one terminal existed.
        await conn.execute("alter table payment_events drop constraint payment_events_provider_dedupe_key_key")
        for provider, account, old, _ in OLD_AND_NEW:
            await conn.execute(
                """insert into payment_events (provider, dedupe_key, account, reference, status, amount, currency,
                                               source, outcome)
                   values ($1, $2, $3, 'r', 'pending', 0, 'VND', 'webhook', 'applied')""",
                provider,
                old,
                account,
            )
        await conn.execute(sql)
        rows = await conn.fetch("select provider, account, dedupe_key from payment_events order by id")
    assert [r["dedupe_key"] for r in rows] == [new for *_, new in OLD_AND_NEW]
