"""Advisory locks of the ledger.

Locks, always taken in this order so no two transactions wait on each other in a cycle:
0. an event's dedupe key (its `payment_events` insert: two deliveries of one event meet here);
1. one advisory lock on the event's or registration's (provider, account, reference);
2. advisory locks on order ids (sorted) — the order an event claims (Stripe metadata.order_id),
   or the order being registered;
3. the order's row (`select … for update`).
(1) and (2) close the quarantine race: an event looking for an order and a registration
creating it serialize on the same key, so either the event commits to quarantine first and
the registration's replay sees it, or the registration commits first and the event finds the
order. Without them both could run concurrently, each missing the other, and the event would
stay in quarantine forever. The row lock then serializes events of one order.

An event whose reference is already registered takes neither (1) nor (2): a registered
reference never moves or vanishes, so nothing can race its lookup (`ledger_apply`, migration
0011, which computes the same keys: `ledger_lock_key`, and these two namespaces).

A group-commit batch (group_commit.py) applies many events in one transaction, each holding its
locks to the end: its events go in (reference key, dedupe key) order, so two batches take the
locks of distinct references in the same order. What can still cross (one order reached through
two references, or claimed) is a deadlock PostgreSQL breaks: the event it picks is rolled back
alone and applied again by itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from service.db import Conn

# Namespaces of the two-int advisory locks (the migrations' one-bigint lock is a separate space).
REFERENCE_LOCK = 0x5052_4600  # "PRF"
ORDER_LOCK = 0x5052_4F00  # "PRO"


def reference_key(provider: str, account: str, reference: str) -> str:
    return f"{provider}\x1f{account}\x1f{reference}"


async def lock(conn: Conn, space: int, keys: Iterable[str]) -> None:
    """Transaction-scoped advisory locks, taken in ascending key order (no lock-order cycles)."""
    for key in sorted({_lock_key(k) for k in keys}):
        await conn.execute("select pg_advisory_xact_lock($1, $2)", space, key)


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big", signed=True)
