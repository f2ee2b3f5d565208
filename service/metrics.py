"""Prometheus metrics: every metric payrecon exports is defined here, once.

Two kinds, and why:
- **Event counters and histograms** (webhooks, ledger outcomes, runs, findings, gateway queries,
  notification deliveries) are incremented where the event happens, in whatever process: a
  `payrecon serve` worker or a `payrecon worker`. Several processes → prometheus-client's
  **multiprocess mode**: each process writes its values to files in `PROMETHEUS_MULTIPROC_DIR`
  and a scrape sums them (`render`). `payrecon serve --workers N` creates that directory itself
  (`multiprocess_dir`); a `payrecon worker` on the same host that shares it is summed in too.
- **State gauges** (breaker open per gateway account, arq queue depth, open anomalies) are read
  at scrape time from PostgreSQL and Redis (`service.metrics_state`), which every process
  shares, so they are right whatever the number of processes and are never double counted.

Module-level by Prometheus convention: a counter is a process-wide fact, whatever app instance
increments it. A metric's name is its contract with dashboards and alerts (deploy/, checked by
tests/deploy/test_deploy.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# --- webhooks and the ledger (service) ---------------------------------------------------------

WEBHOOKS_RECEIVED = Counter("payrecon_webhooks_received_total", "Webhook deliveries received", ["provider"])
WEBHOOKS_REJECTED = Counter(
    "payrecon_webhooks_rejected_total", "Webhook deliveries refused (4xx)", ["provider", "reason"]
)
# A verified delivery that carries nothing we track (a Stripe `customer.created`) has no payment
# status, so it cannot be a payment_events row: this counter and a log line are its audit trail.
WEBHOOKS_IGNORED = Counter(
    "payrecon_webhooks_ignored_total", "Verified webhook deliveries that carried no event we track", ["provider"]
)
# Verified deliveries kept in rejected_deliveries because they cannot be processed as sent (issue 10 item 4).
WEBHOOKS_HELD = Counter(
    "payrecon_webhooks_held_total", "Verified deliveries held for review and replay", ["provider", "reason"]
)
# Refusals beyond the sampler's token buckets (service/refusals.py): counted here and in refusal_tallies, no row each.
WEBHOOKS_REFUSALS_TALLIED = Counter(
    "payrecon_webhooks_refusals_tallied_total",
    "Refused deliveries counted without a rejected_deliveries row (over the sampling budget)",
    ["provider", "reason"],
)
# Requests answered before routing: headers over PAYRECON_MAX_HEADER_BYTES (service/header_limit.py).
REQUESTS_REFUSED_EARLY = Counter(
    "payrecon_requests_refused_early_total", "Requests refused before any work, by reason", ["reason"]
)
WEBHOOKS_UNAVAILABLE = Counter(
    "payrecon_webhooks_unavailable_total", "Webhook deliveries answered 'retry later' (storage down)", ["provider"]
)
LEDGER_OUTCOMES = Counter(
    "payrecon_ledger_outcomes_total", "Events through the ledger by outcome", ["provider", "source", "outcome"]
)
ANOMALIES = Counter("payrecon_anomalies_total", "Anomalies recorded", ["kind"])
LEDGER_APPLY_SECONDS = Histogram("payrecon_ledger_apply_seconds", "Time of one ledger apply transaction")
# Group commit (service/ledger/group_commit.py): how many webhook events each batch statement carried.
LEDGER_BATCH_EVENTS = Histogram(
    "payrecon_ledger_batch_events",
    "Webhook events applied by one group-commit statement",
    buckets=(1, 2, 4, 8, 16, 24, 32, 64),
)

# --- HTTP, every route (service.http_metrics): the series litestar's PrometheusMiddleware wrote ----

_HTTP_LABELS = ("method", "path", "status_code", "app_name")
HTTP_REQUESTS = Counter("payrecon_http_requests_total", "Total requests", _HTTP_LABELS)
HTTP_REQUEST_ERRORS = Counter("payrecon_http_requests_error_total", "Total errors in requests", _HTTP_LABELS)
HTTP_REQUEST_SECONDS = Histogram("payrecon_http_request_duration_seconds", "Request duration, in seconds", _HTTP_LABELS)
HTTP_IN_PROGRESS = Gauge(
    "payrecon_http_requests_in_progress",
    "Total requests currently in progress",
    _HTTP_LABELS,
    multiprocess_mode="livesum",
)

# --- the reconciler (worker) -------------------------------------------------------------------

RUNS = Counter(
    "payrecon_reconcile_runs_total", "Reconciliation runs ended, by trigger and outcome", ["trigger", "status"]
)
FINDINGS = Counter(
    "payrecon_reconcile_findings_total", "Reconciliation findings recorded, by gateway and kind", ["provider", "kind"]
)
GATEWAY_QUERY_SECONDS = Histogram(
    "payrecon_gateway_query_seconds",
    "Time of one status-API query to a gateway account, retries included",
    ["provider", "account"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
GATEWAY_QUERY_ERRORS = Counter(
    "payrecon_gateway_query_errors_total",
    "Status-API queries that failed, by gateway account and error class",
    ["provider", "account", "error"],
)
# Set at the start of each scheduled run; across processes the most recent value wins.
CANDIDATES_DUE = Gauge(
    "payrecon_reconcile_candidates_due",
    "Orders due for a status query when the last scheduled run started",
    multiprocess_mode="mostrecent",
)

# --- outbound notifications to the shop (incremented by the delivery worker) --------------------

# result: delivered (2xx), failed (an attempt that will be retried), gave_up (attempts exhausted),
# or another slug the delivery code defines; one increment per delivery attempt.
NOTIFICATION_DELIVERIES = Counter(
    "payrecon_notification_deliveries_total", "Outbound notification delivery attempts, by result", ["result"]
)

# --- the ops console ---------------------------------------------------------------------------

OPERATOR_ACTIONS = Counter("payrecon_operator_actions_total", "Actions taken in the ops console", ["action"])


def registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The registry a scrape renders: every process's values in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        found = CollectorRegistry()
        MultiProcessCollector(found)  # type: ignore[no-untyped-call]
    else:
        found = REGISTRY
    if not extra:
        return found
    # The scrape-time collectors go into a throwaway registry that also yields the process's.
    scrape = CollectorRegistry()
    scrape.register(_Everything(found))
    for collector in extra:
        scrape.register(collector)
    return scrape


def render(extra: Iterable[Collector] = ()) -> bytes:
    """The Prometheus text exposition of `registry(extra)`."""
    return generate_latest(registry(extra))


class _Everything(Collector):
    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()

    def describe(self) -> Iterable[Metric]:
        return []  # not checked for duplicates against the scrape-time families


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """Multiprocess mode for the processes started inside the block (`serve --workers N`).

    Uses PROMETHEUS_MULTIPROC_DIR when it is set (the operator's choice, e.g. shared with a
    worker); otherwise creates a fresh directory and removes it at the end. It must be set
    before a worker process imports prometheus_client, and must start empty: files left by an
    earlier run would be summed in.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    made = tempfile.mkdtemp(prefix="payrecon-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield made
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(made, ignore_errors=True)
