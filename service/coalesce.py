"""Concurrent calls of one event loop sent to PostgreSQL together: one statement for what arrived at once.

Why: under load most of a short statement's cost is what surrounds it (the pool, the client's send
and receive, PostgreSQL's fixed cost per statement and, for a write, per commit). The calls that
arrive while a batch is in flight wait for it anyway, so they go together as the next batch. With
nothing in flight a call is sent at once, alone: coalescing adds no delay of its own, and no timer.

A call joins only a batch not yet sent, so its statement starts after it was asked: a read sees
every change committed before it, a write commits after it was asked (service/order_reads.py,
service/ledger/group_commit.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`submit(item)` calls batched through `send(items) -> results` (one result per item, in order).

    At most `parallel` batches in flight, each of at most `size` items, the oldest first. An error
    `send` raises is the answer of every call of its batch; later calls go on.
    """

    def __init__(self, send: Callable[[list[T]], Awaitable[Sequence[R]]], *, size: int, parallel: int = 1) -> None:
        self._send, self._size, self._parallel = send, size, parallel
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references to tasks

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return self._in_flight

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start()
        return await future  # its own: a call given up (client gone) cancels nobody else's

    def _start(self) -> None:
        if self._waiting and self._in_flight < self._parallel:
            self._in_flight += 1
            taken, self._waiting = self._waiting[: self._size], self._waiting[self._size :]
            task = asyncio.create_task(self._run(taken))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, taken: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in taken])
            if len(results) != len(taken):
                raise RuntimeError(f"coalesced batch of {len(taken)} answered with {len(results)} results")
        except Exception as error:
            for _, future in taken:
                if not future.done():
                    future.set_exception(error)
        except BaseException:  # cancelled (the loop is closing): so are its calls, and nothing more is sent
            self._in_flight -= 1
            for _, future in taken:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(taken, results, strict=True):
                if not future.done():
                    future.set_result(result)
        self._in_flight -= 1
        self._start()  # what arrived meanwhile
