"""The prediction log's write path: a bounded queue the service fills once a second, a shipper
thread that sends it on, and the writer process that turns it into rows (:mod:`.supervisor`).

The request path must never wait for the database: calls go into the call buffer
(:mod:`.buffer`), which the service's housekeeping hands over here (:meth:`LogShipper.enqueue`).
When the queue is full the rows are dropped and counted: losing log rows under overload is better
than slowing every prediction down. Reading the log is :mod:`.reader`; opening one starts nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Union

from sqlalchemy.engine import Engine

from service.prediction_log.buffer import Columns
from service.prediction_log.inserts import BatchWriter, WriteResult, write_packed
from service.prediction_log.supervisor import Flush, Ledger, WriterSupervisor
from service.prediction_log.tables import create_log_engine, create_tables, is_sqlite_memory

logger = logging.getLogger("service.prediction_log")


class _Stop:
    """Queued by close(): what precedes it is written, then the writer exits."""


_Item = Union[Columns, Flush, _Stop]


class LogShipper:
    """Asynchronous, batched, bounded writing of the service's calls into the prediction log.

    Counters (``written_rows``, ``dropped_rows``, ``write_errors``, ``lost_rows``) only grow.

    Why not ``queue.Queue``: every ``put`` notifies the waiting consumer, so each prediction woke a
    second thread that then fought the event loop for the GIL; measured, that cost 40% of a one-core
    server's throughput. The queue takes segments under an uncontended lock instead, and the
    shipper wakes on a timer (``flush_interval_s``) or when someone waits for it (flush, close).

    The rows are written by a separate process, except for in-memory SQLite, which exists only
    inside this process: there the shipper thread writes them itself.
    """

    def __init__(self, url: str, queue_size: int = 10_000, flush_interval_s: float = 1.0) -> None:
        if queue_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size must be >= 1, flush_interval_s > 0")
        self.url = url
        self.queue_size = queue_size
        self.flush_interval_s = flush_interval_s
        self.engine: Engine = create_log_engine(url)
        self._ledger = Ledger()  # its lock guards the queue, the counts and the flags
        self._pending: list[_Item] = []
        self._closed = False
        self._wake = threading.Event()
        self._shipper: threading.Thread | None = None
        self._local_writer: BatchWriter | None = None
        self._writer: WriterSupervisor | None = None
        self._logged_error = False

    # --------------------------------------------------------------------------- the counts

    @property
    def written_rows(self) -> int:
        return self._ledger.written_rows

    @property
    def dropped_rows(self) -> int:
        return self._ledger.dropped_rows

    @property
    def write_errors(self) -> int:
        return self._ledger.write_errors

    @property
    def lost_rows(self) -> int:
        return self._ledger.lost_rows

    @property
    def writer_restarts(self) -> int:
        return self._writer.restarts if self._writer is not None else 0

    def queue_depth(self) -> int:
        """Rows accepted but not yet committed (queued plus those being written)."""
        return self._ledger.pending_rows

    @property
    def running(self) -> bool:
        """Whether rows are being written: for health checks and flush.

        A dead writer process counts once the receiver has seen its pipe close (at once, in
        practice): from then on ``enqueue`` drops, so the two always agree.
        """
        alive = self._shipper is not None and self._shipper.is_alive()
        return alive and not (self._writer is not None and self._writer.lost)

    # ---------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create the tables, start the writer process and the shipper (idempotent)."""
        if self._closed:
            raise RuntimeError("a closed LogShipper cannot be restarted; create a new one")
        if self._shipper is not None:
            return
        create_tables(self.engine, self.url)
        if is_sqlite_memory(self.url):
            self._local_writer = BatchWriter(self.engine)
        else:
            self._writer = WriterSupervisor(self.url, self._ledger, self._report)
            self._writer.start()
        self._shipper = threading.Thread(
            target=self._ship, name="prediction-log-shipper", daemon=True
        )
        self._shipper.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Write everything queued, stop the writer and release connections.

        Returns False when the writer did not finish within ``timeout``; rows still queued then
        are lost (the threads are daemons and the process is killed, so nothing holds exit up).
        """
        with self._ledger.lock:
            self._closed = True  # enqueue() drops from now on: nothing would write it
            self._pending.append(_Stop())
        if self._writer is not None:
            self._writer.closing.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._shipper is not None:
            self._shipper.join(max(0.0, deadline - time.monotonic()))
        if self._writer is not None:
            self._writer.close(deadline)
        pending = self.queue_depth()
        finished = pending == 0 and not self.running
        if not finished:
            logger.error(
                "prediction log: closed with %d row(s) unwritten (timeout %.1fs)", pending, timeout
            )
        self.engine.dispose()
        return finished

    # ------------------------------------------------------------------------------ queueing

    def enqueue(self, segment: Columns) -> bool:
        """Queue calls in columns (the service's call buffer hands them over once a second) and
        have them shipped at once; False (and counted as dropped) when the queue is full."""
        rows = segment.rows
        ledger = self._ledger
        with ledger.lock:
            lost_writer = self._writer is not None and self._writer.lost
            if self._closed or lost_writer or ledger.pending_rows >= self.queue_size:
                ledger.dropped_rows += rows
                return False
            if not ledger.pending_rows:
                ledger.last_ack = time.monotonic()  # a backlog starts: time it from now
            ledger.pending_rows += rows
            self._pending.append(segment)
        self._wake.set()
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is written (or failed and counted).

        Without a running writer nothing can be written: returns at once, True only if nothing is
        pending.
        """
        if not self.running:
            return self.queue_depth() == 0
        marker = Flush()
        with self._ledger.lock:
            self._pending.append(marker)
        self._wake.set()
        if self._writer is not None:
            self._writer.boost()  # someone waits: an idle-class writer must not wait for a core
        return marker.done.wait(timeout) and not (self._writer is not None and self._writer.lost)

    # ---------------------------------------------------------------------------- shipping

    def _ship(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._ledger.lock:
                items, self._pending = self._pending, []
            try:
                if self._dispatch(items):
                    return
            except Exception:  # noqa: BLE001 - the shipper must outlive any bug in one batch
                logger.exception("prediction log: unexpected error in the shipper thread")

    def _dispatch(self, items: list[_Item]) -> bool:
        """Send the segments in order, each marker after the rows before it; True on stop."""
        writer = self._writer
        for item in items:
            if isinstance(item, Columns):
                if writer is None:
                    self._write_here(item)
                else:
                    writer.send(item.packed())
            elif isinstance(item, Flush):
                if writer is None:
                    item.done.set()  # the local writer has written everything before it
                else:
                    writer.send_flush(item)
            else:
                if writer is not None:
                    writer.send_stop()
                return True
        return False

    def _write_here(self, segment: Columns) -> None:
        """In-memory SQLite: the shipper thread writes the segment itself."""
        assert self._local_writer is not None
        rows = segment.rows
        try:
            result = write_packed(self._local_writer, segment.packed())
        except Exception as exc:  # noqa: BLE001 - an unpicklable output, a driver bug
            result = WriteResult(errors=1, lost=rows)
            self._report(f"{rows} row(s) not written: {type(exc).__name__}: {exc}")
        with self._ledger.lock:
            self._ledger.settle(rows, result)

    def _report(self, message: str) -> None:
        # The first failure is an error; repeats (a database that stays down) must not flood.
        if self._logged_error:
            logger.debug("prediction log: %s", message)
        else:
            logger.error("prediction log: %s", message)
        self._logged_error = True
