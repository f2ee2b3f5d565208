"""The ops console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Playwright's own browser download is not used: the system Chromium is launched by path. Without
one the tests skip, saying so; CI installs it (.ci/run). A screenshot of every page is saved under
the test run's output directory (PAYRECON_TEST_OUTPUT, default test-output/) in ops-console/.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from providers.simkit import Faults
from service.settings import Settings
from tests.conftest import REPO
from tests.ops.world import World, build, run_jobs
from tests.reconciler.stage import Stage, staged
from tests.reconciler.test_run import quick

CHROMIUM = Path(os.environ.get("PAYRECON_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("PAYRECON_TEST_OUTPUT") or REPO / "test-output") / "ops-console"

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: install Debian's `chromium` (apt-get install -y chromium; .ci/run does) "
        "or point PAYRECON_CHROMIUM at one",
    ),
    pytest.mark.timeout(420),  # a whole operator's session in a real browser, on a busy machine
]


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
            page = await context.new_page()
            page.set_default_timeout(20_000)
            page.on("dialog", lambda dialog: dialog.accept())  # the "are you sure" of money-moving buttons
            yield page
            await context.close()
        finally:
            await browser.close()


@pytest.fixture
async def world(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[Stage, World, Settings]]:
    fast = quick(settings)
    async with staged(fast, pool, faults=Faults(drop_rate=1.0, seed=5), gateways=("stripe", "momo")) as stage:
        yield stage, await build(stage), fast


async def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    print(f"screenshot: {path}")
    return path


async def test_an_operator_works_the_console_in_chromium(
    browser_page: Any, world: tuple[Stage, World, Settings], pool: asyncpg.Pool, tmp_path: Path
) -> None:
    stage, w, settings = world
    page = browser_page
    base = stage.app_url

    # Sign in: a page asked for first comes back after the key is accepted.
    await page.goto(f"{base}/ops/anomalies")
    assert "/ops/login" in page.url
    await shot(page, "login")
    await page.fill("input[name=api_key]", w.write_key)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/ops/anomalies"))
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["payrecon_ops"]["httpOnly"]
    assert cookies["payrecon_ops"]["secure"]
    assert cookies["payrecon_ops"]["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # no script can read the session
    await shot(page, "anomalies")

    # Replay a held delivery: a dry run first, then the real one.
    await page.goto(f"{base}/ops/rejected")
    await shot(page, "rejected")
    await page.click(f"a[href='/ops/rejected/{w.held_delivery}']")
    assert await page.locator("#replay").count() == 0
    assert "stripe-signature" in await page.locator("pre.headers").inner_text()
    await page.fill("form.action textarea[name=note]", "dry run before replaying")
    await page.click("#dry-run")
    await page.wait_for_selector("#replay")
    assert await pool.fetchval("select status from orders where id = $1", w.held_order) == "pending"
    await page.fill("form.action textarea[name=note]", "adapter fixed, replaying")
    await page.click("#replay")
    await page.wait_for_load_state()
    text = await page.locator("table.audit").inner_text()
    assert "delivery.replay_dry_run" in text
    assert "adapter fixed, replaying" in text
    assert await pool.fetchval("select status from orders where id = $1", w.held_order) == "succeeded"
    await shot(page, "rejected-delivery")

    # Start a run from the console (real, not dry) and let a worker lead it.
    await page.goto(f"{base}/ops/runs")
    await page.click("summary")
    await page.uncheck("input[name=dry_run]")
    await page.fill(".start-run input[name=since]", "1d")
    await page.fill(".start-run textarea[name=note]", "browser test: after the outage")
    await page.click(".start-run button[type=submit]")
    await page.wait_for_url(re.compile(r"/ops/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    await run_jobs(stage, settings)

    # Filter the run's findings: the select submits itself (ops.js).
    await page.goto(f"{base}/ops/runs/{run_id}")
    await page.select_option("select[name=kind]", "repaired")
    await page.wait_for_url(re.compile(r"kind=repaired"))
    await page.select_option("select[name=provider]", "stripe")
    await page.wait_for_url(re.compile(r"provider=stripe"))
    kinds = await page.locator("table.findings tbody tr td:nth-child(3)").all_inner_texts()
    gateways = await page.locator("table.findings tbody tr td:nth-child(2)").all_inner_texts()
    assert kinds
    assert set(kinds) == {"repaired"}
    assert {g.split("/")[0] for g in gateways} == {"stripe"}
    await shot(page, "run-findings")

    # Download the filtered CSV.
    async with page.expect_download() as download_info:
        await page.click("#csv")
    download = await download_info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(str(saved))
    assert download.suggested_filename == f"run-{run_id}-findings-repaired-stripe.csv"
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert len(rows) == len(kinds)
    assert {(r["kind"], r["provider"]) for r in rows} == {("repaired", "stripe")}

    # Resolve an anomaly with a note, and find it in its audit and in the audit log.
    await page.goto(f"{base}/ops/anomalies")
    await page.click(f"a[href='/ops/anomalies/{w.mismatch_anomaly}']")
    await page.wait_for_url(re.compile(rf"/ops/anomalies/{w.mismatch_anomaly}$"))
    await shot(page, "anomaly")
    resolve = page.locator(f"form[action='/ops/anomalies/{w.mismatch_anomaly}/resolve']")
    await resolve.locator("textarea").fill("refunded the stray cent at Stripe")
    await resolve.locator("button").click()
    await page.wait_for_load_state()
    assert await page.locator("h1 .badge").inner_text() == "resolved"
    audit_rows = await page.locator("table.audit tbody tr").all_inner_texts()
    assert any("alice" in row and "refunded the stray cent at Stripe" in row for row in audit_rows)
    await page.goto(f"{base}/ops/audit")
    assert "refunded the stray cent at Stripe" in await page.locator("table.audit").inner_text()
    await shot(page, "audit")

    # The remaining pages.
    await page.goto(f"{base}/ops/quarantine")
    assert "pi_not_registered" in await page.content()
    await shot(page, "quarantine")
    await page.goto(f"{base}/ops/orders/{w.held_order}")
    assert "manual" in await page.locator("section", has_text="Audit trail").inner_text()
    await shot(page, "order")
    await page.goto(f"{base}/ops/runs")
    await shot(page, "runs")
    await page.goto(f"{base}/ops")
    assert await page.locator("svg.chart rect").count() > 2
    await shot(page, "overview")


async def test_a_read_only_key_sees_no_action_and_cannot_post_one(
    browser_page: Any, world: tuple[Stage, World, Settings]
) -> None:
    stage, w, _ = world
    page = browser_page
    await page.goto(f"{stage.app_url}/ops/login")
    await page.fill("input[name=api_key]", w.read_key)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/ops$"))
    await page.goto(f"{stage.app_url}/ops/anomalies/{w.mismatch_anomaly}")
    assert await page.locator("form[action$='/resolve']").count() == 0
    assert "(read only)" in await page.locator("header").inner_text()
    # A forged form (the page's own token, a key without recon:write) is still refused by the server.
    status = await page.evaluate(
        "async ([path, csrf]) => (await fetch(path, {method: 'POST', body: new URLSearchParams({csrf, note: 'x'})}))"
        ".status",
        [
            f"/ops/anomalies/{w.mismatch_anomaly}/resolve",
            await page.locator("input[name=csrf]").first.get_attribute("value"),
        ],
    )
    assert status == 403
