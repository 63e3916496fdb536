"""State that only the event loop's thread touches, and how the other threads reach it.

Why: the per-request buffers (the call buffer and the HTTP timings) used to be guarded by one
lock each. Head to head under load, those two locks alone cost ~3% of the throughput (measured
against a copy of the service without them). The event loop is the only thread that writes
them, so they need no lock at all if they are also *taken* on the loop's thread: the
housekeeping thread and the ``/metrics`` and ``/feedback`` threads hand their ``take`` to the
loop with ``call_soon_threadsafe`` and wait for the result, and a batch predicted in a worker
thread hands its rows to the loop the same way.

asyncio has ``run_coroutine_threadsafe`` for coroutines; this is its counterpart for a plain
function, with a bounded wait that never loses what the function took (see :meth:`run`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LoopOwner:
    """The event loop (and so the thread) that owns some lock-free state, once :meth:`bind` ran.

    Unbound, there is no owner: :meth:`run` and :meth:`call_soon` call the function at once, and
    the caller must make sure only one thread uses the state (as a unit test does).
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def bind(self) -> None:
        """Make the running loop the owner. Called on it, before any other thread takes part."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def _direct(self) -> asyncio.AbstractEventLoop | None:
        """The loop to hand work to, or None when the caller may run it itself: no owner, the
        owner's own thread, or a loop that has stopped (then nothing on it writes the state)."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._thread or not loop.is_running():
            return None
        return loop

    def call_soon(self, function: Callable[..., None], *args: Any) -> None:
        """Run ``function(*args)`` on the owner's thread, without waiting for it."""
        loop = self._direct()
        if loop is None:
            function(*args)
            return
        try:
            loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # closed since: nothing runs on it any more
            function(*args)

    def run(self, function: Callable[[], T], timeout_s: float, default: T) -> T:
        """``function()`` run on the owner's thread, waited for at most ``timeout_s``.

        If the loop does not get to it in time (stalled, or stopping), the call is cancelled and
        ``default`` returned; a call that has started is always waited for, so whatever it took
        from the state is returned, never dropped.
        """
        loop = self._direct()
        if loop is None:
            return function()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def on_loop() -> None:
            if not future.set_running_or_notify_cancel():
                return  # the waiter gave up first: leave the state as it is
            try:
                future.set_result(function())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the waiting thread
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(on_loop)
        except RuntimeError:  # closed since: nothing runs on it any more
            return function()
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            if future.cancel():
                return default
            return future.result()
