"""`service.serving`: a port reserved for a server is held until it serves, and served on."""

from __future__ import annotations

import errno
import socket

import httpx
import pytest
from litestar.types import Receive, Scope, Send

from service.serving import listening_socket, serving


def _bind(port: int) -> None:
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        other.bind(("127.0.0.1", port))


def test_a_reserved_port_cannot_be_taken_by_another_server() -> None:
    # The demo's CI failure: the API's port was chosen and released, a simulator then asked the kernel for
    # any free port, was given the same one, and the API could not bind it.
    with listening_socket() as held:
        with pytest.raises(OSError) as taken:
            _bind(held.getsockname()[1])
        assert taken.value.errno == errno.EADDRINUSE


def test_a_taken_port_is_an_error_unless_any_port_will_do() -> None:
    with listening_socket() as held:
        port = held.getsockname()[1]
        with pytest.raises(OSError):
            listening_socket(port)
        with listening_socket(port, or_any=True) as other:
            assert other.getsockname()[1] != port


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    """The smallest ASGI app: a lifespan, and 204 to every request."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_a_reserved_socket_is_served_then_released() -> None:
    held = listening_socket()
    port = held.getsockname()[1]
    async with serving(_hello, held) as url:
        assert url == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 204
    _bind(port)  # closed once served: the port is free again


def test_connections_accepted_on_a_reserved_socket_send_at_once() -> None:
    # A server handed the socket accepts on it; without TCP_NODELAY inherited from it, a small answer
    # waited 40 ms for the client's delayed ACK (Nagle's algorithm): the reconciler's benchmark saw each
    # 50 ms status query take 97 ms.
    with listening_socket() as held, socket.create_connection(held.getsockname()):
        accepted, _ = held.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
