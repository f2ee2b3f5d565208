"""A run's report for people and machines: a rich table, CSV (the API's columns) or JSON.

The table leads with what ops act on: the summary per gateway and finding kind, then every
finding that is not `in_sync` (repairs, mismatches, errors, orders unknown to the gateway).
CSV and JSON list every finding, streamed page by page.
"""

from __future__ import annotations

from typing import Any, TextIO

import asyncpg
import msgspec
from rich.console import Console
from rich.table import Table

from service import runs
from service.runs import Finding, FindingKind, ReconcileRun

KIND_ORDER = [k.value for k in (FindingKind.REPAIRED, FindingKind.MISMATCH, FindingKind.MISSING_AT_GATEWAY)] + [
    FindingKind.ERROR.value,
    FindingKind.IN_SYNC.value,
]
KIND_STYLE = {"repaired": "green", "mismatch": "bold red", "missing_at_gateway": "yellow", "error": "red"}
STATUS_STYLE = {"completed": "green", "partial": "yellow", "failed": "bold red", "running": "cyan"}
MAX_TABLE_ROWS = 200


def run_title(run: ReconcileRun) -> str:
    params = run.params
    scope = [f"gateway {params.provider}" if params.provider else "all gateways"]
    if params.since:
        scope.append(f"since {params.since.isoformat()}")
    took = ""
    if run.finished_at is not None:
        took = f" in {(run.finished_at - run.started_at).total_seconds():.1f}s"
    dry = " [bold magenta](dry run: no order changed)[/]" if run.dry_run else ""
    style = STATUS_STYLE.get(run.status.value, "")
    return (
        f"Run {run.id} ({run.trigger.value}, {', '.join(scope)}): [{style}]{run.status.value}[/]{took}"
        f", started {run.started_at:%Y-%m-%d %H:%M:%S} UTC{dry}"
    )


def summary_table(run: ReconcileRun) -> Table:
    """Findings per gateway and kind, as the run counted them when it ended."""
    per_gateway: dict[str, dict[str, int]] = run.counts.get("gateways", {})
    table = Table(title="Findings per gateway", title_justify="left")
    table.add_column("gateway")
    for kind in KIND_ORDER:
        table.add_column(kind, justify="right", style=KIND_STYLE.get(kind))
    table.add_column("total", justify="right", style="bold")
    totals = dict.fromkeys(KIND_ORDER, 0)
    for gateway in sorted(per_gateway):
        row = per_gateway[gateway]
        for kind in KIND_ORDER:
            totals[kind] += row.get(kind, 0)
        table.add_row(gateway, *(str(row.get(k, 0)) for k in KIND_ORDER), str(sum(row.values())))
    table.add_row("all", *(str(totals[k]) for k in KIND_ORDER), str(sum(totals.values())), style="bold")
    return table


def catch_up_lines(run: ReconcileRun) -> list[str]:
    lines = []
    for key, feed in sorted(run.counts.get("catch_up", {}).items()):
        if feed.get("error"):
            lines.append(f"catch-up {key}: [red]failed[/]: {feed['error']}")
        else:
            lines.append(f"catch-up {key}: {feed.get('events', 0)} events read, {feed.get('repaired', 0)} repaired")
    for name in run.counts.get("circuit_open", []):
        lines.append(f"[red]circuit open[/] for {name}: its remaining orders were not asked")
    return lines


def findings_table(findings: list[Finding], more: int) -> Table:
    table = Table(title="What needs a look (in_sync orders left out)", title_justify="left")
    for column in ("order", "gateway", "finding", "ledger", "gateway says"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold", ratio=1)
    for f in findings:
        ledger = f.from_status or ""
        if f.to_status and f.to_status != f.from_status:
            ledger = f"{f.from_status} → {f.to_status}"
        style = KIND_STYLE.get(f.kind.value, "")
        kind = f"[{style}]{f.kind.value}[/]" if style else f.kind.value
        table.add_row(f.order_id, f"{f.provider}/{f.account}", kind, ledger, f.gateway_status or "", f.detail or "")
    if more:
        table.caption = f"… and {more} more; use --format csv for all of them"
    return table


async def render_table(pool: asyncpg.Pool, run: ReconcileRun, console: Console) -> None:
    console.print(run_title(run))
    if run.error:
        console.print(f"[red]error:[/] {run.error}")
    if run.status is runs.RunStatus.RUNNING:
        console.print("[cyan]still running: counts appear when it ends[/]")
    else:
        console.print(summary_table(run))
    for line in catch_up_lines(run):
        console.print(line)
    notable: list[Finding] = []
    more = 0
    async for finding in runs.iter_findings(pool, run.id):
        if finding.kind is FindingKind.IN_SYNC:
            continue
        if len(notable) < MAX_TABLE_ROWS:
            notable.append(finding)
        else:
            more += 1
    if notable:
        console.print(findings_table(notable, more))
    elif run.status is runs.RunStatus.RUNNING:
        pass
    elif not run.counts.get("checked"):
        console.print(
            "No order was checked: none was due. Open orders younger than the grace period "
            "(PAYRECON_RECONCILE_GRACE) are left to their webhooks, and each order is asked again only "
            "when its back-off has passed."
        )
    else:
        console.print("Nothing to look at: every checked order agrees with its gateway.")


async def render_csv(pool: asyncpg.Pool, run: ReconcileRun, out: TextIO) -> None:
    out.write(runs.csv_line(runs.FINDING_CSV_HEADER))
    async for finding in runs.iter_findings(pool, run.id):
        out.write(runs.csv_line(runs.finding_csv_values(finding)))


async def render_json(pool: asyncpg.Pool, run: ReconcileRun, out: TextIO) -> None:
    # Streamed as one document: the run, then findings one by one (an export of a big run stays small in memory).
    head = msgspec.json.encode(run).decode()
    out.write('{"run": ' + head + ', "findings": [')
    first = True
    async for finding in runs.iter_findings(pool, run.id):
        out.write(("" if first else ",") + "\n  " + msgspec.json.encode(finding).decode())
        first = False
    out.write("\n]}\n")


async def render(pool: asyncpg.Pool, run: ReconcileRun, fmt: str, out: TextIO, **console: Any) -> None:
    if fmt == "csv":
        await render_csv(pool, run, out)
    elif fmt == "json":
        await render_json(pool, run, out)
    else:
        if not out.isatty():
            # A pipe or a file: no terminal to fit, so the table keeps its natural width instead
            # of rich's 80 columns, which cut the detail column.
            console.setdefault("width", 10_000)
        await render_table(pool, run, Console(file=out, **console))
