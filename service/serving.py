"""Serving the app with uvicorn: `payrecon serve` (`serve_forever`, one process per CPU), and inside
the caller's event loop on a loopback port (`serving`: the demo's servers, benchmarks and tests).

`serving`: unlike litestar's AsyncTestClient (which runs the app in a portal thread with its own loop), the
app shares the caller's loop, so it can be handed objects of that loop, and it speaks real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from litestar.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from service.metrics import multiprocess_dir
from service.settings import PREFIX, Settings

if TYPE_CHECKING:
    from litestar import Litestar


def listening_socket(port: int = 0, *, or_any: bool = False) -> socket.socket:
    """A loopback socket listening on `port` (0: any free port; `or_any`: any free port when `port` is taken).

    It holds its port from now on: a caller that must know its URL before it serves (the gateway simulators
    are told where to send webhooks first) reserves it with this and hands it to `serving`. A port number
    chosen and released (`free_port`) can be handed to the next server that asks the kernel for a free one.
    """
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            if not or_any:
                raise
            s.bind(("127.0.0.1", 0))
        # Accepted connections inherit it. Without it, a server handed this socket answered a small request
        # 40 ms late (Nagle's algorithm against the client's delayed ACK): the server binds its own with it set.
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.listen(2048)  # listening, no other socket can bind the port, SO_REUSEADDR or not
    except BaseException:
        s.close()
        raise
    return s


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free, else any free loopback port: for a port handed to another process."""
    with listening_socket(preferred or 0, or_any=True) as s:
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the caller owns the signals (Ctrl-C, pytest)
        yield


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int | socket.socket | None = None) -> AsyncIterator[str]:
    """Serve `app` (lifespan included) until the block ends; yield its base URL.

    `port`: a port number, or a socket from `listening_socket` (served, then closed), or any free port.
    """
    sock = port if isinstance(port, socket.socket) else listening_socket(port or 0)
    port = int(sock.getsockname()[1])
    # proxy_headers off: PAYRECON_TRUSTED_PROXIES (service/client_address.py) is the one judge of forwarded
    # headers; uvicorn's own default would trust X-Forwarded-For from any 127.0.0.1 peer.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", proxy_headers=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error here
                raise RuntimeError(f"could not serve on port {port}")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()  # uvicorn closes what it served; not a socket whose startup failed


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(settings: Settings) -> int:
    return settings.workers or cpu_count()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    # "auto": uvloop and httptools when installed (they are dependencies; bench/RESULTS.md has the figures)
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "lifespan": "on",
        "loop": "auto",
        "http": "auto",
        # uvicorn's lines go through our root handler (service/logs.py): text, or JSON with PAYRECON_LOG_JSON
        "log_config": None,
        # off: PAYRECON_TRUSTED_PROXIES (service/client_address.py) is the one judge of forwarded headers;
        # uvicorn's own default would trust X-Forwarded-For from any 127.0.0.1 peer
        "proxy_headers": False,
        # limits against slow and abusive clients (README: "Behind a reverse proxy, and under attack")
        "timeout_keep_alive": settings.keep_alive,
        "limit_concurrency": settings.max_concurrency or None,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }


def served_app(settings: Settings | None = None) -> Litestar:
    """The app as `payrecon serve` runs it: built, then left out of the garbage collector's full passes.

    Everything built here lives as long as the process. A full pass over it stalls every request in
    flight for tens of milliseconds (44 ms measured in-process) every few thousand requests: a p99
    cost paid for nothing. Frozen, the passes walk only what requests allocate.
    """
    from service.app import create_app  # not at the top: the app imports half the service

    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app


def single_server(settings: Settings) -> uvicorn.Server:
    """`payrecon serve --workers 1`: the app in this process."""
    return uvicorn.Server(uvicorn.Config(served_app(settings), **uvicorn_options(settings)))


def serve_workers(settings: Settings) -> None:
    """`payrecon serve` with several processes sharing one listening socket, until SIGINT/SIGTERM.

    uvicorn's supervisor starts them (and replaces any that dies); each builds its app from the
    environment (`served_app()`), so the resolved database and Redis URLs — embedded servers'
    included — are exported first. Each has its own pool of PAYRECON_DB_POOL_MAX connections.
    Their metrics are summed by whichever answers /metrics: prometheus-client's multiprocess mode,
    in a directory made for them unless PROMETHEUS_MULTIPROC_DIR names one (service/metrics.py).
    """
    for name, value in ((f"{PREFIX}DATABASE_URL", settings.database_url), (f"{PREFIX}REDIS_URL", settings.redis_url)):
        if value is not None:
            os.environ[name] = value
    config = uvicorn.Config(
        "service.serving:served_app", factory=True, workers=worker_count(settings), **uvicorn_options(settings)
    )
    with multiprocess_dir():
        Multiprocess(config, sockets=[config.bind_socket()]).run()
