"""The writer process seen from the service: start it, send it shipments, apply its
acknowledgements, and replace it when it dies.

If the writer dies, what it had not acknowledged is counted lost, and new calls are dropped and
counted while a new writer is started, after a pause that doubles with each death in a row (1 s up
to a minute). Every count goes through the shipper's :class:`Ledger`, under its lock.

A starved writer is raised (:meth:`WriterSupervisor.keep_up`) by the receiver whenever a grace
period passes without a message, not by the shipper: a shipment larger than the pipe's buffer
blocks the shipper in ``send`` until the writer reads, which an idle-class writer on a saturated
core never does (measured: with the check after each send, the writer stayed idle-class for
seconds, the queue filled and rows were dropped).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from service.prediction_log.inserts import WriteResult
from service.prediction_log.wire import Packed, send_packed
from service.prediction_log.writer import (
    BACKLOG_GRACE_S,
    WRITER_NICENESS,
    boost_writer,
    can_raise_priority,
    run_writer,
)

logger = logging.getLogger("service.prediction_log")

# A dead writer is replaced after this pause, doubled with each death in a row (a writer that
# acknowledged something before dying starts the count again), up to the maximum.
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0


@dataclass
class Ledger:
    """The write path's row counts; change them only with ``lock`` held.

    ``pending_rows``: accepted and not yet written (queued, in the pipe, being written). The
    others only grow, so they map directly onto Prometheus counters; ``write_errors`` counts
    failed writes that lost rows (``lost_rows`` of them).
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    pending_rows: int = 0
    written_rows: int = 0
    dropped_rows: int = 0
    write_errors: int = 0
    lost_rows: int = 0
    last_ack: float = field(default_factory=time.monotonic)

    def settle(self, rows: int, result: WriteResult) -> None:
        """``rows`` pending rows are done, as ``result`` says. Lock held."""
        self.last_ack = time.monotonic()
        self.pending_rows -= rows
        self.written_rows += result.written
        self.write_errors += result.errors
        self.lost_rows += result.lost


class Flush:
    """Queued behind pending calls; set once everything queued before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class WriterSupervisor:
    """One writer process at a time, on a pipe; ``lost`` while none runs."""

    def __init__(self, url: str, ledger: Ledger, report: Callable[[str], None]) -> None:
        self.url = url
        self.restarts = 0
        self.lost = False  # the writer died and no new one runs yet: callers drop new rows
        self.closing = threading.Event()  # ends a restart pause at once
        self._ledger = ledger
        self._report = report
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._generation = 0  # the writer process's incarnation: 1 for the first
        self._acked = False  # the current writer acknowledged something
        # Rows handed to the writer process and not acknowledged yet: what its death loses. Kept
        # apart from the queue, so a shipment that fails after the receiver counted it as lost is
        # not counted twice.
        self._unacked_rows = 0
        self._receiver: threading.Thread | None = None
        self._flush_tokens = itertools.count()
        self._flushes: dict[int, Flush] = {}
        self._can_boost = can_raise_priority(WRITER_NICENESS)

    def start(self) -> None:
        self._spawn()
        self._receiver = threading.Thread(
            target=self._receive, name="prediction-log-receiver", daemon=True
        )
        self._receiver.start()

    def _spawn(self) -> None:
        # spawn, not fork: forking a process that runs threads (the event loop's executor,
        # the housekeeper) can copy a held lock into the child.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=run_writer,
            args=(self.url, theirs, WRITER_NICENESS),
            name="prediction-log-writer",
            daemon=True,
        )
        process.start()
        theirs.close()
        with self._ledger.lock:
            self._process, self._connection = process, ours
            self._generation += 1
            self._acked = False
            self.lost = False
            self._ledger.last_ack = time.monotonic()

    def close(self, deadline: float) -> None:
        """After the stop was sent: wait for the receiver and the process until ``deadline``
        (monotonic), then kill the process if it is still there."""
        self.closing.set()
        if self._receiver is not None:
            self._receiver.join(max(0.0, deadline - time.monotonic()))
        if self._process is not None:
            self._process.join(max(0.0, deadline - time.monotonic()))
            if self._process.is_alive():
                self._process.kill()
                self._process.join(1.0)
        if self._connection is not None:
            self._connection.close()

    # ------------------------------------------------------------------------------ sending

    def send(self, packed: Packed) -> None:
        """Hand a shipment to the writer; a failure is counted (once) and reported."""
        rows = packed.rows
        ledger = self._ledger
        with ledger.lock:
            connection, generation = self._connection, self._generation
            handed_over = not self.lost
            if handed_over:
                self._unacked_rows += rows
        assert connection is not None
        try:
            if not handed_over:
                raise BrokenPipeError("the writer process is gone")
            send_packed(connection, packed)
        except Exception as exc:  # noqa: BLE001 - a dead writer or an unpicklable output
            with ledger.lock:
                # Rows the receiver already counted as lost, when it noticed the writer die
                # after they were handed over, are not counted again.
                counted = handed_over and (self.lost or self._generation != generation)
                if handed_over and not counted:
                    self._unacked_rows -= rows
                if not counted:
                    ledger.settle(rows, WriteResult(errors=1, lost=rows))
            self._report(f"{rows} row(s) not sent to the writer: {type(exc).__name__}: {exc}")

    def send_flush(self, marker: Flush) -> None:
        token = next(self._flush_tokens)
        self._flushes[token] = marker
        try:
            assert self._connection is not None
            self._connection.send(("flush", token))
        except OSError:
            self._flushes.pop(token, None)
            marker.done.set()  # flush() reports the lost writer

    def send_stop(self) -> None:
        try:
            assert self._connection is not None
            self._connection.send(("stop",))
        except OSError:
            pass  # the writer is gone already; close() reports what was not written

    def boost(self) -> None:
        """Raise the writer out of the idle class (someone waits, or it is starved)."""
        if self._process is not None and self._process.pid is not None and self._can_boost:
            self._can_boost = boost_writer(self._process.pid)

    def keep_up(self) -> None:
        """Raise a starved writer: rows are pending and none was acknowledged for BACKLOG_GRACE_S
        (a saturated core starves an idle-class task). Called by the receiver: see the module."""
        ledger = self._ledger
        with ledger.lock:
            behind = (
                ledger.pending_rows > 0 and time.monotonic() - ledger.last_ack > BACKLOG_GRACE_S
            )
        if behind:
            self.boost()

    # ---------------------------------------------------------------------------- receiving

    def _receive(self) -> None:
        """Apply the writers' acknowledgements; replace a writer that dies (until closing)."""
        delay = RESTART_DELAY_S
        while True:
            connection, process = self._connection, self._process
            assert connection is not None and process is not None
            if self._receive_from(connection):
                return
            if self._acked:  # it wrote for a while: not a writer that dies at once
                delay = RESTART_DELAY_S
            self._died(process, delay)
            while not self.closing.wait(delay):
                delay = min(2 * delay, MAX_RESTART_DELAY_S)
                try:
                    self._spawn()
                    break
                except Exception:  # noqa: BLE001 - e.g. out of processes: try again later
                    logger.exception("prediction log: the writer could not be restarted")
            else:
                return  # closing: nothing to write any more
            with self._ledger.lock:
                self.restarts += 1
            logger.warning("prediction log: writer restarted (restart %d)", self.restarts)

    def _receive_from(self, connection: Connection) -> bool:
        """Messages of one writer until it stops (True) or dies (False)."""
        while True:
            try:
                if not connection.poll(BACKLOG_GRACE_S):
                    self.keep_up()
                    continue
                message = connection.recv()
            except (EOFError, OSError):
                return False
            kind = message[0]
            if kind == "done":
                with self._ledger.lock:
                    self._acked = True
                    self._unacked_rows -= message[1]
                    self._ledger.settle(message[1], WriteResult(*message[2:]))
            elif kind == "flushed":
                self._acked = True
                marker = self._flushes.pop(message[1], None)
                if marker is not None:
                    marker.done.set()
            elif kind == "stopped":
                return True

    def _died(self, process: BaseProcess, delay: float) -> None:
        """Count what the dead writer took with it; new calls are dropped until a new one runs."""
        process.join(1.0)
        ledger = self._ledger
        with ledger.lock:
            self.lost = True
            lost, self._unacked_rows = self._unacked_rows, 0
            ledger.pending_rows -= lost
            ledger.lost_rows += lost
            ledger.write_errors += 1 if lost else 0
        # Our end of its pipe stays open: the shipper may be sending on it, and a closed file
        # descriptor could be reused by the next writer's pipe. It closes when dropped.
        if not self.closing.is_set():
            logger.error(
                "prediction log: the writer process exited (code %s); %d row(s) lost, new "
                "predictions are dropped and counted until a new writer runs (in %.0f s)",
                process.exitcode,
                lost,
                delay,
            )
        for token in list(self._flushes):
            marker = self._flushes.pop(token, None)
            if marker is not None:
                marker.done.set()
