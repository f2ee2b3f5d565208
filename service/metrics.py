"""Business metrics on the Prometheus default registry (served at /metrics).

Module-level by Prometheus convention: a counter is a process-wide fact, whatever app
instance increments it.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS_RECEIVED = Counter("payrecon_webhooks_received_total", "Webhook deliveries received", ["provider"])
WEBHOOKS_REJECTED = Counter(
    "payrecon_webhooks_rejected_total", "Webhook deliveries refused (4xx)", ["provider", "reason"]
)
# A verified delivery that carries nothing we track (a Stripe `customer.created`) has no payment
# status, so it cannot be a payment_events row: this counter and a log line are its audit trail.
WEBHOOKS_IGNORED = Counter(
    "payrecon_webhooks_ignored_total", "Verified webhook deliveries that carried no event we track", ["provider"]
)
WEBHOOKS_UNAVAILABLE = Counter(
    "payrecon_webhooks_unavailable_total", "Webhook deliveries answered 'retry later' (storage down)", ["provider"]
)
LEDGER_OUTCOMES = Counter(
    "payrecon_ledger_outcomes_total", "Events through the ledger by outcome", ["provider", "source", "outcome"]
)
ANOMALIES = Counter("payrecon_anomalies_total", "Anomalies recorded", ["kind"])
LEDGER_APPLY_SECONDS = Histogram("payrecon_ledger_apply_seconds", "Time of one ledger apply transaction")
