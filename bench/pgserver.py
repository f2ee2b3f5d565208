"""A private PostgreSQL 15 for benchmarks: initdb + pg_ctl on a free port in a temp dir.

Benchmarks never use the machine's shared server: other engineers' test suites would be in
the figures. The server lives as long as the `private_postgres()` block and is removed after.

Tuning (a benchmark of a durable OLTP write path on a small machine, not a production template):
- fsync and synchronous_commit stay ON: an acknowledged webhook must be on disk, and the
  pgbench ceiling pays the same commit cost, so the ratio compares like with like;
- shared_buffers 2GB: the 10 M-event history (about 6 GB with indexes) does not fit, its hot
  tail does — as on a production server, RAM ≪ history;
- max_wal_size 16GB, checkpoint_timeout 30min: no checkpoint in the middle of a 10 s figure
  (a checkpoint storm is a real cost, but a separate benchmark's);
- wal_buffers 64MB, wal_compression off: bigger group commits, no CPU spent compressing;
- jit off: statements of a few rows only pay JIT's compile time;
- max_connections 300: 64-connection load plus the server pools;
- autovacuum on with the defaults: history grows as in production;
- WAL segments recycled before the first figure (`_recycled_wal`): a server in service writes into
  segments its checkpoints renamed for reuse, while a new one creates and zero-fills a 16 MB file
  every few seconds of load, in the middle of some commit. Measured with bench/ingest.py (MoMo,
  one round): p99 51.6-51.8 ms on a new server, 42.2-44.9 ms with wal_init_zero off, which
  skips the zero-fill the way recycling does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from service.serving import free_port

BINDIR = Path(os.environ.get("PAYRECON_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "shared_buffers": "'2GB'",
    "effective_cache_size": "'8GB'",
    "work_mem": "'16MB'",
    "maintenance_work_mem": "'1GB'",
    "max_wal_size": "'16GB'",
    "min_wal_size": "'4GB'",  # the segments a checkpoint keeps for reuse (_recycled_wal)
    "checkpoint_timeout": "'30min'",
    "wal_buffers": "'64MB'",
    "jit": "off",
    "random_page_cost": "1.1",
    "fsync": "on",
    "synchronous_commit": "on",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _as_postgres() -> list[str]:
    # initdb refuses to run as root; the machine's `postgres` user owns the data directory instead.
    if os.geteuid() != 0:
        return []
    pwd.getpwnam("postgres")
    return ["runuser", "-u", "postgres", "--"]


# PAYRECON_BENCH_PG_SLOW=1s: auto_explain logs the plan of every statement slower than that, and the
# server's log is copied to PAYRECON_BENCH_PG_LOG (default ./bench-postgres.log) when it stops.
SLOW = os.environ.get("PAYRECON_BENCH_PG_SLOW")


@contextlib.contextmanager
def private_postgres(settings: dict[str, str] | None = None, preload: tuple[str, ...] = ()) -> Iterator[str]:
    """Start a fresh PostgreSQL; yield the URL of its `postgres` database; stop and delete it after.

    `preload`: libraries for shared_preload_libraries (beside auto_explain when SLOW is set).
    """
    libraries = [*(("auto_explain",) if SLOW else ()), *preload]
    if libraries:
        settings = {"shared_preload_libraries": f"'{','.join(libraries)}'", **(settings or {})}
    if SLOW:
        settings = {
            "auto_explain.log_min_duration": f"'{SLOW}'",
            "auto_explain.log_analyze": "off",
            "log_min_duration_statement": f"'{SLOW}'",
            "log_min_messages": "log",
            **(settings or {}),
        }
    if not (BINDIR / "initdb").exists():
        raise SystemExit(f"no PostgreSQL binaries in {BINDIR}; set PAYRECON_BENCH_PG_BIN")
    folder = Path(tempfile.mkdtemp(prefix="payrecon-bench-pg-"))
    sudo = _as_postgres()
    if sudo:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    port = free_port()
    try:
        subprocess.run(
            [*sudo, str(BINDIR / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = {**SETTINGS, **(settings or {}), "port": str(port), "unix_socket_directories": f"'{folder}'"}
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in options.items())
        subprocess.run(
            [*sudo, str(BINDIR / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "start"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            _recycled_wal(url)
            yield url
        finally:
            subprocess.run(
                [*sudo, str(BINDIR / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                stdout=subprocess.DEVNULL,
            )
            if SLOW:
                shutil.copy(folder / "log", os.environ.get("PAYRECON_BENCH_PG_LOG", "bench-postgres.log"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Segments made and recycled ahead: min_wal_size (4GB) worth, what a checkpoint keeps for reuse,
# more than bench/ingest.py's whole run writes.
_WARM_SEGMENTS = 256


def _recycled_wal(url: str) -> None:
    """Fill `_WARM_SEGMENTS` WAL segments and checkpoint, so the segments the figures write into exist already."""
    subprocess.run(
        [
            str(BINDIR / "psql"),
            "-qX",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            "create table _wal_warmup (n integer)",
            "-c",
            f"""do $$ begin for n in 1..{_WARM_SEGMENTS} loop
                    insert into _wal_warmup values (n); perform pg_switch_wal();
                end loop; end $$""",
            "-c",
            "drop table _wal_warmup",
            "-c",
            "checkpoint",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def describe() -> str:
    """One line for a benchmark's header: what the private server runs with."""
    keys = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "synchronous_commit", "fsync", "jit")
    return "private PostgreSQL 15: " + ", ".join(f"{k}={SETTINGS[k].strip(chr(39))}" for k in keys)
