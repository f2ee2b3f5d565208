"""Stopping the commands as a person or a supervisor does: Ctrl-C, SIGTERM, and `dev.py run` under Ctrl-C.

Each stop is quiet (one line, no traceback, no click "Aborted!") and leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from service import embedded
from service.serving import free_port
from service.settings import Settings
from tests.conftest import REPO

PAYRECON = [sys.executable, "-c", "from service.cli import main; main()"]


def environment(**values: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYRECON_")}
    return {**clean, **{f"PAYRECON_{k.upper()}": v for k, v in values.items()}}


def start(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603


def wait_for(predicate: object, process: subprocess.Popen[bytes], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited before {what}"
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {limit:g}s")


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen[bytes], signum: int, limit: float = 30.0) -> int:
    process.send_signal(signum)
    try:
        return process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"still running {limit:g}s after {signal.Signals(signum).name}") from None


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_serve_stops_quietly(
    settings: Settings, tmp_path: Path, reap: list[subprocess.Popen[bytes]], signum: int, code: int, workers: int
) -> None:
    assert settings.database_url is not None
    assert settings.redis_url is not None
    port = free_port()
    env = environment(
        database_url=settings.database_url, redis_url=settings.redis_url, port=str(port), workers=str(workers)
    )
    out = tmp_path / "serve.log"
    process = start([*PAYRECON, "serve"], env, out)
    reap.append(process)
    wait_for(lambda: healthy(port), process, 120, "healthy server")
    returned = stop(process, signum)
    text = out.read_text()
    assert "Traceback" not in text, text
    assert "Aborted" not in text, text
    assert returned in (0, code), text  # uvicorn may finish its graceful stop before the signal reaches us
    assert len([line for line in text.splitlines() if line.startswith("payrecon:")]) <= 1, text


async def test_serve_on_a_schema_behind_says_one_line(server_urls: embedded.Servers, tmp_path: Path) -> None:
    name = f"payrecon_behind_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_urls.database_url)
    try:
        await admin.execute(f'create database "{name}"')
        env = environment(
            database_url=embedded.with_database(server_urls.database_url, name), redis_url=server_urls.redis_url
        )
        result = subprocess.run(  # noqa: ASYNC221, S603 - the CLI under test, run to its exit
            [*PAYRECON, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "payrecon: database schema is behind (missing "
        + ", ".join(p.stem for p in sorted((REPO / "migrations").glob("*.sql")))
        + "); run `payrecon migrate` first"
    ]


async def test_a_database_that_is_not_there_is_one_line(server_urls: embedded.Servers) -> None:
    env = environment(database_url=embedded.with_database(server_urls.database_url, f"nowhere_{uuid.uuid4().hex[:8]}"))
    result = subprocess.run(  # noqa: ASYNC221, S603 - the CLI under test, run to its exit
        [*PAYRECON, "migrate"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith('payrecon: cannot use the database: database "nowhere_'), result.stderr


async def test_the_demo_stops_on_sigterm_with_one_line(
    settings: Settings, tmp_path: Path, reap: list[subprocess.Popen[bytes]]
) -> None:
    assert settings.database_url is not None
    assert settings.redis_url is not None
    name = f"payrecon_demo_{uuid.uuid4().hex[:8]}"
    env = environment(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        queue_name=settings.queue_name,
        port=str(free_port()),
        data_dir=str(tmp_path),
    )
    out = tmp_path / "demo.log"
    process = start([*PAYRECON, "run", "--orders", "1", "--database", name], env, out)
    reap.append(process)
    try:
        wait_for(lambda: "Still serving" in out.read_text(), process, 180, "demo serving")
        returned = stop(process, signal.SIGTERM)
    finally:
        admin = await asyncpg.connect(embedded.with_database(settings.database_url, "postgres"))
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()
    text = out.read_text()
    assert returned == 0, text
    assert "Traceback" not in text, text
    assert text.rstrip().splitlines()[-1] == "payrecon: stopped (SIGTERM)"


def test_dev_py_run_leaves_no_process_behind_after_ctrl_c(tmp_path: Path, reap: list[subprocess.Popen[bytes]]) -> None:
    # No URLs: the demo starts its own embedded PostgreSQL and Redis (under a data dir of this
    # test's), which is exactly what used to be orphaned when dev.py killed payrecon too early.
    env = environment(data_dir=str(tmp_path / "data"), port=str(free_port()))
    out = tmp_path / "dev-run.log"
    process = start([sys.executable, str(REPO / "dev.py"), "run", "--orders", "1"], env, out)
    reap.append(process)
    wait_for(lambda: "Still serving" in out.read_text(), process, 240, "demo serving")
    family = [process.pid, *(p.pid for p in psutil.Process(process.pid).children(recursive=True))]
    assert len(family) > 1, "the embedded servers run as children"
    # Ctrl-C as the terminal sends it to dev.py's process (which must now be payrecon itself: a
    # dev.py waiting in subprocess.call killed payrecon 0.25 s later and orphaned the servers)
    returned = stop(process, signal.SIGINT, limit=60)
    text = out.read_text()
    deadline = time.monotonic() + 10
    while (left := [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not left, f"still running after Ctrl-C: {[psutil.Process(p).cmdline()[:2] for p in left]}\n{text}"
    assert returned == 130, text
    assert "Traceback" not in text, text
