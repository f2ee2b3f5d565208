"""The ledger: the only code that writes `orders` (DESIGN.md §3).

`apply` takes one event through one transaction: dedupe insert, order lookup, row lock,
the pure rules of `service.transitions`, order update, audit row, anomalies. Registering an
order or a reference (`register_order`, `add_reference`) applies the events that waited for
it in quarantine, in gateway time order, in the same transaction.

`GroupCommit` applies the events one process receives at once in one statement and one commit
(webhooks take it), each answered as `apply` would answer it alone.

Modules: `apply_event` (one event through one transaction), `group_commit` (concurrent events
committed together), `registration` (orders and their
references, releasing quarantined events), `locks` (the lock order that closes the races).
"""

from service.ledger.apply_event import apply, get_order, record_anomaly
from service.ledger.group_commit import GroupCommit
from service.ledger.registration import (
    OrderConflictError,
    OrderNotFoundError,
    ReferenceTakenError,
    Registration,
    add_reference,
    register_order,
    request_hash,
)

__all__ = [
    "GroupCommit",
    "OrderConflictError",
    "OrderNotFoundError",
    "ReferenceTakenError",
    "Registration",
    "add_reference",
    "apply",
    "get_order",
    "record_anomaly",
    "register_order",
    "request_hash",
]
