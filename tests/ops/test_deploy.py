"""deploy/: the Grafana dashboard and the alert rules use only metrics payrecon exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from service import metrics, metrics_state
from service.settings import Settings
from tests.e2e.harness import running

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAME = re.compile(r"\bpayrecon_[a-z0-9_]+")


def declared() -> set[str]:
    """Every series name the metrics module and the scrape-time gauges can produce."""
    names = set(metrics_state.NAMES)
    for metric in vars(metrics).values():
        if isinstance(metric, Counter):
            names.add(f"{metric._name}_total")
        elif isinstance(metric, Histogram):
            names |= {f"{metric._name}_{suffix}" for suffix in ("bucket", "count", "sum")}
        elif isinstance(metric, Gauge):
            names.add(metric._name)
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_exprs() -> dict[str, str]:
    text = (DEPLOY / "alerts.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)\n\s+expr: (\|\n(?:\s{10,}.*\n)+|.*\n)", text)
    return dict(alerts)


async def test_every_metric_the_dashboard_and_alerts_use_exists(settings: Settings) -> None:
    async with running(settings) as app:
        await app.http.get("/healthz")  # the HTTP middleware's series appear with the first request
        scraped = {s.name for family in text_string_to_metric_families((await app.http.get("/metrics")).text)
                   for s in family.samples}  # fmt: skip
    known = declared() | scraped
    used = {name for expr in [*dashboard_exprs(), *alert_exprs().values()] for name in NAME.findall(expr)}
    assert used, "no metric found in deploy/"
    assert used - known == set()
    assert not {n for n in used if n.endswith("_created")}  # not a series dashboards should read


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    alerts = alert_exprs()
    assert {
        "PayreconWebhooksRejected",
        "PayreconReconcilerErrors",
        "PayreconAnomaliesOpened",
        "PayreconBreakerOpen",
    } <= set(alerts)
    assert "payrecon_webhooks_rejected_total" in alerts["PayreconWebhooksRejected"]
    assert "payrecon_breaker_open" in alerts["PayreconBreakerOpen"]
    assert "payrecon_anomalies_total" in alerts["PayreconAnomaliesOpened"]
    assert "payrecon_reconcile_findings_total" in alerts["PayreconReconcilerErrors"]


def test_the_dashboard_shows_the_reconciler_and_the_outbox() -> None:
    exprs = " ".join(dashboard_exprs())
    wanted = ["payrecon_reconcile_runs_total", "payrecon_gateway_query_seconds_bucket", "payrecon_breaker_open"]
    for name in [*wanted, "payrecon_queue_depth", "payrecon_notification_deliveries_total"]:
        assert name in exprs
