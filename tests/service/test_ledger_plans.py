"""The ledger's lookups of the quarantine are index probes: their cost does not grow with it (issue 9).

Every statement the ledger runs on the ingest paths and at registration — the Python ones and
those inside `ledger_apply`/`ledger_step` — is planned on a table holding 20,000 quarantined
events and its plan read from auto_explain (nested statements included, sent to the client). A
plan that scans payment_events without an index condition reads the whole quarantine (or the
whole table) per call: the shape that made the Stripe claim path collapse as history grew
(bench/RESULTS.md, "Cost against history"). Costs and row counts are not compared, only shapes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from providers.base import OutcomeKind, PaymentStatus
from service import db, ledger
from service.model import NewReference, Source
from tests.service.test_ledger import register
from tests.service.test_ledger_quarantine import stripe

S = PaymentStatus
QUARANTINED = 20_000


class Plans:
    """The plans auto_explain sends a connection (one JSON document per statement)."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    def collect(self, _conn: object, message: asyncpg.PostgresLogMessage) -> None:
        head, _, plan = str(message.message).partition("plan:")
        if head.startswith("duration:") and plan:
            self.documents.append(json.loads(plan))

    async def listen(self, conn: Any) -> None:
        conn.add_log_listener(self.collect)  # a pool drops listeners on release: added at every acquire

    def scans(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(query text, node) for every plan node, InitPlans and SubPlans included."""
        for document in self.documents:
            stack = [document["Plan"]]
            while stack:
                node = stack.pop()
                stack.extend(node.get("Plans", ()))
                yield document["Query Text"], node


@pytest_asyncio.fixture
async def explained(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, Plans]]:
    """A pool whose every statement's plan (nested ones too) is collected, over a populated quarantine."""
    await pool.execute(
        """insert into payment_events (provider, dedupe_key, account, reference, claimed_order_id, status, amount,
                                       currency, source, outcome)
           select (array['stripe', 'momo', 'vnpay'])[1 + i % 3], 'lost:' || i, 'default', 'lost-ref-' || i,
                  case when i % 2 = 0 then 'lost-order-' || i end, 'succeeded', 150000, 'USD', 'webhook',
                  'unknown_order'
           from generate_series(1, $1) i""",
        QUARANTINED,
    )
    await pool.execute("analyze")
    name = await pool.fetchval("select current_database()")
    for setting, value in (
        ("session_preload_libraries", "auto_explain"),
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_nested_statements", "on"),
        ("auto_explain.log_format", "json"),
        ("client_min_messages", "log"),
    ):
        await pool.execute(f"alter database \"{name}\" set {setting} = '{value}'")
    plans = Plans()
    # New connections, so they start with the settings above; the codecs of the service's own pool.
    explaining = await asyncpg.create_pool(
        database_url, min_size=1, max_size=2, init=db.init_connection, setup=plans.listen
    )
    try:
        yield explaining, plans
    finally:
        explaining.terminate()


# The listener is meant to stay for the connection's life (the pool's reset drops it, `setup` adds it again).
@pytest.mark.filterwarnings("ignore:.*is being released to the pool but has 1 active log listener")
async def test_quarantine_lookups_are_index_probes(explained: tuple[asyncpg.Pool, Plans]) -> None:
    pool, plans = explained
    # Registration: its replay looks for events waiting under the new reference or claiming the order.
    await register(pool, currency="USD", provider="stripe", reference="pi_first")
    # The Stripe claim path (a new PaymentIntent carrying metadata.order_id), in ledger_apply.
    claim = await ledger.apply(pool, stripe(S.PROCESSING, "pi_second", "ord-1"), Source.WEBHOOK)
    assert (claim.kind, claim.order_id) == (OutcomeKind.APPLIED, "ord-1")
    # Into quarantine: it claims an order nobody registered.
    lost = await ledger.apply(pool, stripe(S.PROCESSING, "pi_third", "ord-unknown"), Source.WEBHOOK)
    assert lost.kind is OutcomeKind.UNKNOWN_ORDER
    # The release path: its reference has a quarantined sibling claiming an order, so ledger_apply
    # refuses (PR001) and the general path (sibling claims, replay) releases both into ord-1.
    release = await ledger.apply(pool, stripe(S.SUCCEEDED, "pi_third", "ord-1"), Source.WEBHOOK)
    assert (release.kind, release.order_id) == (OutcomeKind.APPLIED, "ord-1")
    assert await pool.fetchval("select order_id from payment_events where id = $1", lost.event_id) == "ord-1"
    # A direct hit on a known reference, and an added reference's replay.
    direct = await ledger.apply(pool, stripe(S.REFUNDED, "pi_second", None), Source.WEBHOOK)
    assert direct.kind is OutcomeKind.APPLIED
    await ledger.add_reference(pool, "ord-1", NewReference(provider="stripe", reference="pi_fourth"))
    await asyncio.sleep(0)  # log messages are handed to listeners by the event loop

    indexes = {r[0] for r in await pool.fetch("select indexname from pg_indexes where tablename = 'payment_events'")}
    whole = []
    probed = set()
    for query, node in plans.scans():
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "payment_events":
            whole.append((query, node))
        elif node.get("Index Name") in indexes:
            if "Index Cond" in node:
                probed.add(node["Index Name"])
            else:
                whole.append((query, node))
    assert not whole, "scans of all of payment_events or one of its indexes:\n" + "\n\n".join(
        f"{query.strip()}\n  {node['Node Type']} on {node.get('Index Name') or 'payment_events'}: "
        f"{node.get('Filter', '')}"
        for query, node in whole
    )
    # The test saw the lookups it is about: both quarantine indexes were probed.
    assert {"payment_events_quarantine_idx", "payment_events_quarantine_claimed_idx"} <= probed
