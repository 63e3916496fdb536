"""The loop owner: other threads reach the loop's lock-free buffers through it, losing nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from service.prediction_log.buffer import CallBuffer
from service.prediction_log.ids import request_id
from service.runtime.loop_owner import LoopOwner


class LoopThread:
    """A real event loop running in its own thread, with a bound owner."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.owner = LoopOwner()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._bind(), self.loop).result(5)

    async def _bind(self) -> None:
        self.owner.bind()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def running() -> Iterator[LoopThread]:
    loop_thread = LoopThread()
    yield loop_thread
    if loop_thread.loop.is_running():
        loop_thread.close()


def test_unbound_runs_in_the_calling_thread() -> None:
    owner = LoopOwner()
    seen: list[int] = []
    owner.call_soon(seen.append, 1)
    assert owner.run(lambda: threading.get_ident(), 1.0, 0) == threading.get_ident()
    assert seen == [1]


def test_other_threads_run_on_the_loop_thread_in_order(running: LoopThread) -> None:
    seen: list[tuple[str, int | None]] = []
    running.owner.call_soon(lambda: seen.append(("soon", threading.get_ident())))
    ran_on = running.owner.run(threading.get_ident, 5.0, None)
    assert ran_on == running.thread.ident != threading.get_ident()
    assert seen == [("soon", running.thread.ident)], "a call handed over first has run first"


def test_an_error_on_the_loop_reaches_the_waiter(running: LoopThread) -> None:
    def broken() -> int:
        raise ValueError("taken badly")

    with pytest.raises(ValueError, match="taken badly"):
        running.owner.run(broken, 5.0, 0)


def test_a_stalled_loop_times_out_and_the_call_never_runs_later(running: LoopThread) -> None:
    release = threading.Event()
    running.loop.call_soon_threadsafe(release.wait)  # holds the loop's thread
    taken: list[str] = []
    assert running.owner.run(lambda: taken.append("late") or 7, 0.2, -1) == -1
    release.set()
    assert running.owner.run(lambda: len(taken), 5.0, -1) == 0, "the cancelled call was skipped"


def test_a_stopped_loop_lets_the_caller_run_it(running: LoopThread) -> None:
    running.close()
    assert running.owner.run(threading.get_ident, 0.5, None) == threading.get_ident()


def test_a_consumer_thread_takes_every_call_exactly_once(running: LoopThread) -> None:
    """The service's pattern: the loop adds without a lock while another thread keeps taking."""
    buffer = CallBuffer(max_rows=1_000_000, id_prefix="p-")
    calls = 20_000

    async def produce() -> None:
        row = np.zeros((1, 2))
        for index in range(calls):
            buffer.add("1", index, 7 * index, True, row, ["a", "b"], np.array([0.5]), 0.0, 1.0)
            if index % 50 == 0:
                await asyncio.sleep(0)  # other callbacks (the takes) run between requests

    produced = asyncio.run_coroutine_threadsafe(produce(), running.loop)
    ids: list[str] = []
    rows = 0
    while not produced.done():
        for segment in running.owner.run(buffer.take, 5.0, []):
            ids.extend(segment.packed().ids())
            rows += segment.rows
            assert segment.rows == len(segment.numbers) == sum(segment.counts)
    produced.result()
    for segment in running.owner.run(buffer.take, 5.0, []):
        ids.extend(segment.packed().ids())
        rows += segment.rows
    assert rows == calls and ids == [request_id("p-", index, 7 * index) for index in range(calls)]
    assert buffer.dropped_rows == 0
