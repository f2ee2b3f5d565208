"""What the HTTP benchmarks share: wrk (found or installed), `payrecon serve` in its own process, request files."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import msgspec

HERE = Path(__file__).resolve().parent
LUA = HERE / "deliveries.lua"


class Request(msgspec.Struct, frozen=True):
    method: str
    path: str  # with its query string
    header: tuple[str, str] | None = None
    body: bytes = b""


class WrkResult(msgspec.Struct, frozen=True):
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx/3xx answers, socket errors, timeouts

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk_binary() -> str:
    """Debian's wrk: found on PATH, else installed with apt-get (root) — never built or downloaded."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install -y wrk)", flush=True)
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        if subprocess.run(install, check=False, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian/Ubuntu) or brew install wrk")
    return found


def write_requests(path: Path, requests: Iterable[Request]) -> int:
    """The file deliveries.lua reads: one tab-separated line per request."""
    count = 0
    with path.open("wb") as out:
        for r in requests:
            if b"\t" in r.body or b"\n" in r.body:
                raise ValueError("request bodies must be one line without tabs (compact JSON)")
            name, value = r.header or ("", "")
            out.write(b"\t".join([r.method.encode(), r.path.encode(), name.encode(), value.encode(), r.body]) + b"\n")
            count += 1
        # On disk now, not when the kernel writes back dirty pages 30 s later (vm.dirty_expire_centisecs):
        # that is in the middle of the next figure, and tens of MB written at once stall PostgreSQL's
        # WAL flushes. Every gateway's first round had a p99 about twice its later rounds' before this.
        out.flush()
        os.fsync(out.fileno())
    return count


def run_wrk(
    url: str, requests_file: Path, *, seconds: float, connections: int, threads: int = 2, skip: int = 0
) -> WrkResult:
    """wrk over the file's requests (from line `skip` on) for `seconds`."""
    command = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(requests_file),
        str(threads),
        str(skip),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({shlex.join(command)}):\n{done.stdout}\n{done.stderr}")
    values = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    errors = sum(values[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkResult(
        requests=values["requests"],
        seconds=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        max_ms=values["max_us"] / 1000,
        errors=errors,
    )


class Served(msgspec.Struct, frozen=True):
    url: str
    pid: int


@contextlib.contextmanager
def profiled(pid: int, output: Path | None, seconds: float) -> Iterator[None]:
    """py-spy record of the server (and its worker processes) while the block runs, as collapsed stacks."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", "200"]
    command += ["--duration", str(max(1, round(seconds))), "--output", str(output), "--nonblocking"]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.wait(timeout=seconds + 60)


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], port: int, *, ready_path: str = "/readyz") -> Iterator[Served]:
    """Run a server process (its own process group) until the block ends; yield its base URL once ready."""
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240  # a loaded machine starts slowly
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"{shlex.join(command)} exited with {process.returncode}:\n{log.read().decode()}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(base + ready_path, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{shlex.join(command)} did not become ready")
                time.sleep(0.2)
            yield Served(base, process.pid)
        finally:
            process.terminate()  # SIGTERM to the server, which stops its workers
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (a server and its workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def listener_pid(port: int) -> int:
    """The process listening on 127.0.0.1:`port` (a private PostgreSQL's postmaster, say)."""
    import psutil

    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return connection.pid
    raise LookupError(f"nothing listens on port {port}")


def payrecon_serve(workers: int | None) -> list[str]:
    """`payrecon serve` of this checkout's venv."""
    command = [sys.executable, "-m", "service.cli", "serve"]
    return command if workers is None else [*command, "--workers", str(workers)]


def machine() -> str:
    cpus = os.cpu_count()
    load = os.getloadavg()
    return f"{cpus} CPUs, load average {load[0]:.1f} at start"
