"""Does `payrecon serve` keep memory per request? tracemalloc in-process, and the RSS of a real serve (issue 14.7).

    export PAYRECON_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres PAYRECON_REDIS_URL=redis://127.0.0.1:6379/0
    .venv/bin/python bench/memory.py trace [--warmup 5000] [--counts 10000,40000]
    .venv/bin/python bench/memory.py rss [--counts 1000,5000,10000,20000,40000,80000] [--malloc default,arena2]

The load is wrk (bench/deliveries.lua, 1 thread) over a file of requests that never repeat a key,
so whatever is kept per order, reference, source address, path or request id grows with the
count. Every 10 requests: 3 new signed MoMo IPNs and 2 new signed VNPay IPNs (each applies an
event), 1 redelivery of an earlier IPN (a duplicate), 2 authenticated reads of those orders, 1 of
{read of an unknown order (404), list of orders, a path no route has (404)}, and 1 MoMo IPN signed
with a wrong key from a new source address (X-Forwarded-For, PAYRECON_TRUSTED_PROXIES=127.0.0.1:
a refusal, sampled per source by service/refusals.py). Logging stays at INFO (a line per webhook).

`trace`: the app in this process (uvicorn on loopback, `service.serving.serving`) with tracemalloc
on; wrk is another process, so only the server's allocations are traced. It snapshots after
--warmup requests (pools, statement caches and metric children fill), then again after each of
--counts (counted from the warm-up's end), and prints the traced memory's growth per 1,000
requests in each interval and the allocation sites that grew: the innermost frame, and the
innermost frame of our own code (service/, providers/, reconciler/) under which it happened.
Memory kept per request grows alike in every interval; a cache filling up grows in the first only.

`rss`: `payrecon serve --workers 1` in its own process, once per --malloc setting (`default`:
glibc as is; `arena2`: MALLOC_ARENA_MAX=2), its RSS read from /proc after each count, beside the
Python allocator's live blocks (sys.getallocatedblocks, reported by the process on SIGUSR1: a
two-line signal handler around the same `payrecon serve`). At the end SIGUSR2 runs malloc_trim(0)
in it: what RSS drops then is free memory glibc had kept, not live data.

A scratch database (--database, `payrecon_bench_memory`) is made on the server of
PAYRECON_DATABASE_URL for each run (orders registered in bulk, as bench/ingest.py does) and
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import itertools
import os
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import ingest
import load

from providers.momo.sim.simulator import WRONG_SECRET_KEY
from reconciler.demo import fresh_database
from service import apikeys, embedded, metrics, migrate
from service.app import create_app
from service.cli import gateways_toml
from service.serving import free_port, serving
from service.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "payrecon:bench:memory"
BLOCK = 10  # requests per round of the mix (see the docstring)
OURS = tuple(f"{ROOT}/{package}/" for package in ("service", "providers", "reconciler"))
MALLOC = {"default": {}, "arena2": {"MALLOC_ARENA_MAX": "2"}}

# `payrecon serve --workers 1`, plus a report of the Python allocator's live blocks on SIGUSR1 and
# malloc_trim(0) first on SIGUSR2, appended to the file named by argv[1].
PROBED_SERVE = """
import ctypes, signal, sys
from service.cli import main
libc, report = ctypes.CDLL(None), sys.argv[1]
def probe(signum, frame):
    trimmed = libc.malloc_trim(0) if signum == signal.SIGUSR2 else -1
    with open(report, "a") as out:
        out.write(f"{sys.getallocatedblocks()} {trimmed}\\n")
signal.signal(signal.SIGUSR1, probe)
signal.signal(signal.SIGUSR2, probe)
sys.argv = ["payrecon", "serve", "--workers", "1"]
main()
"""


def mix(momo: ingest.Gateway, vnpay: ingest.Gateway, key: str) -> Iterator[load.Request]:
    """The requests, in rounds of BLOCK; every order, unknown id, path and source address is new."""
    auth = ("Authorization", f"Bearer {key}")
    m, v = list(momo.deliveries()), list(vnpay.deliveries())
    for b in range(min(len(m) // 3, len(v) // 2)):
        yield from m[3 * b : 3 * b + 3]
        yield from v[2 * b : 2 * b + 2]
        yield m[3 * (b // 2)] if b % 2 else v[2 * (b // 2)]  # sent in an earlier round (or this one)
        yield load.Request("GET", f"/v1/orders/{momo.orders[3 * b]}", auth)
        yield load.Request("GET", f"/v1/orders/{vnpay.orders[2 * b]}", auth)
        yield [
            load.Request("GET", f"/v1/orders/unknown-{b}", auth),
            load.Request("GET", "/v1/orders?limit=20", auth),
            load.Request("GET", f"/nowhere/{b}"),
        ][b % 3]
        forged = momo.sim.ipn_body(momo.sim.get_payment(momo.orders[3 * b + 1]), secret=WRONG_SECRET_KEY)
        source = str(ipaddress.IPv4Address("198.18.0.0") + b)  # 198.18.0.0/15: for benchmarks (RFC 2544)
        yield load.Request("POST", "/webhooks/momo", ("X-Forwarded-For", source), forged)


async def prepare(server: str, database: str, requests: int, folder: Path) -> str:
    """A fresh scratch database with the orders `requests` requests of the mix need, the request file
    (folder/requests.tsv) and the gateways' accounts (folder/gateways.toml); returns the database URL."""
    url = await fresh_database(server, database)
    conn = await asyncpg.connect(url)
    try:
        await migrate.migrate(conn)
        key = (await apikeys.create(conn, "memory", ["orders:read"])).key
    finally:
        await conn.close()
    rounds = (requests + requests // 10 + 3000) // BLOCK  # wrk overshoots a little; past the end it repeats
    momo, vnpay = ingest.Gateway("momo", 3 * rounds), ingest.Gateway("vnpay", 2 * rounds)
    await ingest.register(url, [momo, vnpay])
    accounts = {g.name: [g.sim.gateway_config(f"http://{g.name}.invalid")] for g in (momo, vnpay)}
    (folder / "gateways.toml").write_text(gateways_toml(accounts))  # status APIs are never called here
    load.write_requests(folder / "requests.tsv", mix(momo, vnpay, key))
    return url


async def drop(server: str, database: str) -> None:
    admin = await asyncpg.connect(embedded.with_database(server, "postgres"))
    try:
        await admin.execute(f'drop database if exists "{database}" with (force)')
    finally:
        await admin.close()


class Driver:
    """wrk over the request file, a run at a time, each going on where the last one stopped."""

    def __init__(self, url: str, requests: Path, connections: int) -> None:
        self.url, self.requests, self.connections = url, requests, connections
        self.done = 0  # requests answered so far: the next run starts at that line of the file
        self.rate = 0.0  # of the last run, requests/s

    def until(self, goal: int) -> int:
        """Run wrk until `goal` requests in all are answered (a little more: runs last whole seconds)."""
        while self.done < goal:
            seconds = min(30.0, (goal - self.done) / self.rate) if self.rate else 1.0
            result = load.run_wrk(
                self.url, self.requests, seconds=seconds, connections=self.connections, threads=1, skip=self.done
            )
            self.done += result.requests
            self.rate = max(result.rate, 1.0)
        return self.done


def answers(exposition: str) -> dict[str, int]:
    """Requests per HTTP status from the /metrics text (payrecon_http_requests_total)."""
    found: dict[str, int] = defaultdict(int)
    for labels, value in re.findall(r"^payrecon_http_requests_total\{(.*)\} (\S+)$", exposition, re.M):
        found[re.search(r'status_code="(\d+)"', labels).group(1)] += int(float(value))  # type: ignore[union-attr]
    return dict(sorted(found.items()))


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon (the heap's share; the rest is mapped files) of a process, in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|RssAnon):\s+(\d+) kB", text, re.M)}


# --- trace: tracemalloc over the app in this process ----------------------------------------------

Site = tuple[str, str]  # (innermost frame, innermost frame of our code under which it was allocated)


def where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for marker in ("/site-packages/", f"{ROOT}/", "/lib/python3."):
        if marker in name:
            name = name.split(marker, 1)[1].removeprefix("11/").removeprefix("12/")
            break
    return f"{name}:{frame.lineno}"


def live(snapshot: tracemalloc.Snapshot) -> dict[Site, list[int]]:
    """Site → [bytes, blocks] of the allocations alive in the snapshot."""
    sites: dict[Site, list[int]] = defaultdict(lambda: [0, 0])
    for trace in snapshot.traces:
        frames = trace.traceback  # oldest first: [-1] is where the allocation happened
        ours = next((f for f in reversed(frames) if f.filename.startswith(OURS)), None)
        site = sites[(where(frames[-1]), where(ours) if ours is not None and ours != frames[-1] else "")]
        site[0] += trace.size
        site[1] += 1
    return sites


def snapshot() -> tracemalloc.Snapshot:
    """The server's allocations: neither the snapshots kept so far nor this script's own."""
    gc.collect()
    mine = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    return tracemalloc.take_snapshot().filter_traces(mine)


async def idle() -> None:
    """Wait until no request is in progress (wrk cuts off its last ones), then a moment for the log thread."""
    for _ in range(200):
        running = sum(s.value for m in metrics.HTTP_IN_PROGRESS.collect() for s in m.samples)
        if running == 0:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


async def trace(args: argparse.Namespace, server: str, redis_url: str, folder: Path) -> None:
    counts = [int(c) for c in args.counts.split(",")]
    url = await prepare(server, args.database, args.warmup + counts[-1], folder)
    settings = load_settings(
        {},
        database_url=url,
        redis_url=redis_url,
        queue_name=QUEUE,
        gateways=str(folder / "gateways.toml"),
        trusted_proxies="127.0.0.1",
    )
    requests = folder / "requests.tsv"
    points: list[tuple[int, tracemalloc.Snapshot]] = []
    tracemalloc.start(args.frames)
    async with serving(create_app(settings)) as base:
        started, driver = time.monotonic(), Driver(base, requests, args.connections)
        for goal in [args.warmup, *(args.warmup + c for c in counts)]:
            done = await asyncio.to_thread(driver.until, goal)
            await idle()
            points.append((done - args.warmup, snapshot()))
            traces = points[-1][1].traces
            print(
                f"  {done - args.warmup:>6,} after warm-up ({time.monotonic() - started:.0f} s): the server's "
                f"{sum(t.size for t in traces) / 1e6:.2f} MB in {len(traces):,} blocks; process RSS "
                f"{rss_kib(os.getpid())['VmRSS'] / 1024:.1f} MiB with tracemalloc's "
                f"{tracemalloc.get_tracemalloc_memory() / 2**20:.1f} MiB and the snapshots",
                flush=True,
            )
        print(f"answers by status: {answers(metrics.render().decode())}")
    tracemalloc.stop()
    report([(n, live(s)) for n, s in points], args.top)


def report(points: list[tuple[int, dict[Site, list[int]]]], top: int) -> None:
    intervals = list(itertools.pairwise(points))
    heads = [f"{a:,}→{b:,}" for (a, _), (b, _) in intervals]
    print("\ntraced memory per 1,000 requests, by interval after warm-up:")
    for head, ((a, before), (b, after)) in zip(heads, intervals, strict=True):
        grew = sum(s[0] for s in after.values()) - sum(s[0] for s in before.values())
        blocks = sum(s[1] for s in after.values()) - sum(s[1] for s in before.values())
        print(f"  {head}: {grew / (b - a) * 1000:+,.0f} bytes, {blocks / (b - a) * 1000:+,.1f} blocks")
    keys = set().union(*(sites for _, sites in points))
    rates = {
        key: [
            (
                (after.get(key, [0, 0])[0] - before.get(key, [0, 0])[0]) / (b - a) * 1000,
                (after.get(key, [0, 0])[1] - before.get(key, [0, 0])[1]) / (b - a) * 1000,
            )
            for (a, before), (b, after) in intervals
        ]
        for key in keys
    }
    ranked = sorted(rates.items(), key=lambda item: -max(abs(size) for size, _ in item[1]))[:top]
    print(f"\ntop {top} allocation sites by growth (bytes and blocks per 1,000 requests in each interval):")
    print(f"| allocated at | under (our code) | {' | '.join(f'{h} bytes | blocks' for h in heads)} |")
    print(f"|---|---|{'---:|---:|' * len(heads)}")
    for (inner, ours), per in ranked:
        cells = " | ".join(f"{size:+,.0f} | {blocks:+,.1f}" for size, blocks in per)
        print(f"| {inner} | {ours or '-'} | {cells} |")


# --- rss: a real `payrecon serve --workers 1` -----------------------------------------------------


def probe(pid: int, report_file: Path, signum: int) -> tuple[int, int]:
    """Signal the server and wait for its line: (the Python allocator's live blocks, malloc_trim's result)."""
    seen = len(report_file.read_text().splitlines()) if report_file.exists() else 0
    os.kill(pid, signum)
    for _ in range(200):
        lines = report_file.read_text().splitlines() if report_file.exists() else []
        if len(lines) > seen:
            blocks, trimmed = lines[-1].split()
            return int(blocks), int(trimmed)
        time.sleep(0.05)
    raise RuntimeError("the server did not answer the memory probe")


def rss(args: argparse.Namespace, server: str, redis_url: str, folder: Path) -> None:
    counts = [int(c) for c in args.counts.split(",")]
    for variant in args.malloc.split(","):
        url = asyncio.run(prepare(server, args.database, counts[-1], folder))
        port = free_port()
        env = {
            **os.environ,
            **MALLOC[variant],
            "PAYRECON_DATABASE_URL": url,
            "PAYRECON_REDIS_URL": redis_url,
            "PAYRECON_QUEUE_NAME": QUEUE,
            "PAYRECON_GATEWAYS": str(folder / "gateways.toml"),
            "PAYRECON_PORT": str(port),
            "PAYRECON_TRUSTED_PROXIES": "127.0.0.1",
        }
        report_file = folder / f"probe-{variant}.txt"
        command = [sys.executable, "-c", PROBED_SERVE, str(report_file)]
        print(f"\n{variant} ({' '.join(f'{k}={v}' for k, v in MALLOC[variant].items()) or 'glibc defaults'}):")
        print("| requests | RSS MiB | of it anonymous MiB | Python allocator blocks | seconds |")
        print("|---:|---:|---:|---:|---:|")
        with load.server(command, env, port) as served:
            started, driver = time.monotonic(), Driver(served.url, folder / "requests.tsv", args.connections)
            for goal in [0, *counts]:
                done = driver.until(goal)
                blocks, _ = probe(served.pid, report_file, signal.SIGUSR1)
                memory = rss_kib(served.pid)
                print(
                    f"| {done:,} | {memory['VmRSS'] / 1024:.1f} | {memory['RssAnon'] / 1024:.1f} | {blocks:,} | "
                    f"{time.monotonic() - started:.0f} |",
                    flush=True,
                )
            blocks, trimmed = probe(served.pid, report_file, signal.SIGUSR2)
            memory = rss_kib(served.pid)
            print(
                f"| after malloc_trim(0) (returned {trimmed}) | {memory['VmRSS'] / 1024:.1f} | "
                f"{memory['RssAnon'] / 1024:.1f} | {blocks:,} | |"
            )
            print(f"answers by status: {answers(httpx.get(served.url + '/metrics', timeout=30).text)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["trace", "rss"])
    parser.add_argument("--counts", help="request counts to measure at (trace: after the warm-up)")
    parser.add_argument("--warmup", type=int, default=5_000, help="trace: requests before the first snapshot")
    parser.add_argument("--frames", type=int, default=16, help="trace: frames tracemalloc keeps per allocation")
    parser.add_argument("--top", type=int, default=15, help="trace: allocation sites listed")
    parser.add_argument("--malloc", default="default,arena2", help=f"rss: glibc settings, of {', '.join(MALLOC)}")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--database", default="payrecon_bench_memory", help="the scratch database's name")
    args = parser.parse_args()
    args.counts = args.counts or ("10000,40000" if args.mode == "trace" else "1000,5000,10000,20000,40000,80000")
    server = os.environ.get("PAYRECON_DATABASE_URL")
    redis_url = os.environ.get("PAYRECON_REDIS_URL")
    if not server or not redis_url:
        raise SystemExit("set PAYRECON_DATABASE_URL (a server to make the scratch database on) and PAYRECON_REDIS_URL")
    load.wrk_binary()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {load.machine()}; {args.mode} {args.counts}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        try:
            if args.mode == "trace":
                asyncio.run(trace(args, server, redis_url, Path(folder)))
            else:
                rss(args, server, redis_url, Path(folder))
        finally:
            asyncio.run(drop(server, args.database))
    print(f"done {time.strftime('%H:%M')}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
