"""The statements of the ledger's write path, named, with their parameters in order.

The work itself is in PL/pgSQL functions installed by migrations/0011_ledger_apply.sql, so one
event costs ONE statement — one round trip, run in autocommit (a statement is its own
transaction: no BEGIN/COMMIT round trips). `bench/` builds its pgbench ceiling from these.

Paths and their round trips:
- common (the reference is known, or the event directly claims a registered order): `APPLY`, 1;
- redelivered duplicate: `APPLY`, 1 (its stored outcome comes back with it);
- unknown order (quarantine): `APPLY`, 1;
- rare (quarantined events to release with this one): `APPLY` refuses with SQLSTATE `SLOW_PATH`
  before anything commits; the general path then runs in a transaction (apply_event.py), each
  event it applies through `STEP`.

Webhooks go through `APPLY_BATCH` (migration 0080, service/ledger/group_commit.py): the events a
process receives at once, each `ledger_apply` in its own subtransaction, in one statement and one
commit. An event refused there (`refused` is its SQLSTATE) is applied again alone, through `APPLY`.
"""

from __future__ import annotations

# SQLSTATE of ledger_apply's refusal: "this event releases quarantined ones; take the general path".
SLOW_PATH = "PR001"

# Parameters of APPLY, in order: (name, PostgreSQL type).
APPLY_PARAMETERS: tuple[tuple[str, str], ...] = (
    ("provider", "text"),
    ("dedupe_key", "text"),
    ("account", "text"),
    ("reference", "text"),
    ("claimed_order_id", "text"),  # Stripe metadata.order_id, else null
    ("status", "text"),  # a PaymentStatus value
    ("amount", "bigint"),
    ("currency", "text"),
    ("provider_payment_id", "text"),
    ("refunded_amount", "bigint"),
    ("occurred_at", "timestamptz"),
    ("reason", "text"),
    ("flag", "text"),
    ("source", "text"),  # a Source value
    ("payload", "jsonb"),
    ("raw_body", "bytea"),
    ("raw_headers", "jsonb"),
)

# The columns APPLY and STEP return (one row): the outcome, the order before and after, the
# anomaly kinds found (and those newly opened), and for a duplicate the stored outcome.
OUTCOME_COLUMNS = """kind, order_id, event_id, before_status, before_refunded, before_ppid, before_version,
                     after_status, after_refunded, after_ppid, after_version, anomalies, new_anomalies"""

APPLY = f"""select {OUTCOME_COLUMNS}, stored
            from ledger_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"""

# The same parameters as arrays, one element per event: a batch of APPLYs in one statement, one
# transaction. One row per event, by `ordinal` (1-based): APPLY's columns, or `refused` (a SQLSTATE).
_ARRAYS = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(APPLY_PARAMETERS, 1))
APPLY_BATCH = f"select ordinal, {OUTCOME_COLUMNS}, stored, refused from ledger_apply_batch({_ARRAYS})"

# One stored event ($2 bigint, payment_events.id) applied to one order ($1 text), inside the
# caller's transaction, under its locks (the quarantine replay of registration and the general path).
STEP = f"select {OUTCOME_COLUMNS}, null::text as stored from ledger_step($1, $2)"

# What perf's pgbench ceiling replays: the statements of one apply, in order.
APPLY_PATH: list[str] = [APPLY]
DUPLICATE_PATH: list[str] = [APPLY]
