"""service/coalesce.py: calls arriving together go as one batch; a batch's error is each of its calls' answer."""

from __future__ import annotations

import asyncio

import pytest

from service.coalesce import Coalescer


class Recorder:
    """A `send` that records its batches and answers each item doubled, after the test lets it."""

    def __init__(self, *, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail:
            raise ConnectionError("database away")
        return [2 * i for i in items]


async def settle() -> None:
    """Let every ready task run: the submits, then the batches they start."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_call_alone_goes_at_once_and_what_arrives_meanwhile_goes_next() -> None:
    send = Recorder()
    send.release.clear()
    calls = Coalescer(send, size=3)
    first = asyncio.create_task(calls.submit(1))
    await settle()
    assert send.batches == [[1]]  # sent without waiting for company
    rest = [asyncio.create_task(calls.submit(i)) for i in range(2, 7)]
    await settle()
    assert send.batches == [[1]]  # one batch in flight: the others wait for it, never join it
    send.release.set()
    assert await first == 2
    assert await asyncio.gather(*rest) == [4, 6, 8, 10, 12]
    assert send.batches == [[1], [2, 3, 4], [5, 6]]  # oldest first, at most `size` a batch
    assert calls.in_flight == 0


async def test_parallel_batches() -> None:
    send = Recorder()
    send.release.clear()
    calls = Coalescer(send, size=10, parallel=2)
    tasks = [asyncio.create_task(calls.submit(i)) for i in range(4)]
    await settle()
    assert send.batches == [[0], [1]]
    assert calls.in_flight == 2
    send.release.set()
    assert await asyncio.gather(*tasks) == [0, 2, 4, 6]


async def test_a_batch_error_answers_its_calls_and_later_calls_go_on() -> None:
    send = Recorder(fail=True)
    calls = Coalescer(send, size=10)
    answers = await asyncio.gather(*(calls.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in answers)
    assert calls.in_flight == 0
    send.fail = False
    assert await calls.submit(7) == 14


async def test_a_call_given_up_leaves_the_others_answered() -> None:
    send = Recorder()
    send.release.clear()
    calls = Coalescer(send, size=10)
    tasks = [asyncio.create_task(calls.submit(i)) for i in range(3)]
    await settle()
    tasks[0].cancel()
    send.release.set()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert await asyncio.gather(*tasks[1:]) == [2, 4]


async def test_a_send_answering_the_wrong_number_of_results_fails_its_calls() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    calls: Coalescer[int, int] = Coalescer(short, size=10)
    answers = await asyncio.gather(*(calls.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(a, RuntimeError) for a in answers), answers
