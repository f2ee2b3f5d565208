"""A tiny TCP proxy for outage tests: the app talks to PostgreSQL through it, and a test cuts it.

`cut()` drops every connection and refuses new ones (a crashed or restarting server);
`stall()` keeps connections open but stops moving bytes (a network partition: the worst case,
since nothing fails fast); `restore()` brings the proxy back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_CHUNK = 65536


class TcpProxy:
    """Listens on a loopback TCP port; forwards to a TCP (host, port) or a Unix socket path."""

    def __init__(self, target_host: str, target_port: int, *, unix_path: str | None = None) -> None:
        self.target = (target_host, target_port)
        self.unix_path = unix_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """A proxy to the server of a PostgreSQL URL; `?host=/dir` (the embedded server) is a Unix socket."""
        parts = urlsplit(url)
        port = parts.port or 5432
        socket_dir = dict(parse_qsl(parts.query)).get("host", "")
        if socket_dir.startswith("/"):
            return cls("", port, unix_path=f"{socket_dir}/.s.PGSQL.{port}")
        return cls(parts.hostname or "127.0.0.1", port)

    def url_through(self, url: str) -> str:
        """`url` pointed at the proxy: its host and port replaced, any socket `host=` dropped."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    async def start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Drop every connection and stop listening: connects are refused."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def stall(self) -> None:
        """Stop moving bytes on every connection, old and new; nothing fails, everything waits."""
        self._flowing.clear()

    async def restore(self) -> None:
        await self.cut()
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        try:
            if self.unix_path is not None:
                server_r, server_w = await asyncio.open_unix_connection(self.unix_path)
            else:
                server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.add(server_w)
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort()
