"""The prediction log: every prediction and every feedback label, in a real database.

Predictions are what drift monitoring compares with training; predictions joined with their labels
are what a retrain learns from (exported into ``data/feedback/``, appended by ``mloop.ingest``).

The request path must never wait for the database, so :meth:`PredictionLog.record` only copies
the call's rows into bounded in-memory column buffers. Once a second a shipper thread hands them
to the writer process (:mod:`service.log_writer`), which turns them into rows and writes each
shipment in one transaction. When the buffers are full the call is dropped and counted: losing log
rows under overload is better than slowing every prediction down. The tables and the database
settings are in :mod:`service.log_store`; the export of labelled rows for a retrain (and its CLI)
in :mod:`service.log_export`.

If the writer process dies, new calls are dropped and counted while a new writer is started, after
a pause that doubles with each death in a row (1 s up to a minute): ``running`` and
``writer_restarts`` tell /ready and the metrics.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Union

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from service.call_buffer import Columns, append_call
from service.log_store import (
    BatchWriter,
    WriteResult,
    create_log_engine,
    feature_set_names,
    feedback,
    is_sqlite_memory,
    malformed,
    metadata,
    predictions,
    redact,
    sqlite_path,
)
from service.log_writer import (
    BACKLOG_GRACE_S,
    WRITER_NICENESS,
    can_raise_priority,
    boost_writer,
    run_writer,
    send_packed,
    write_packed,
)

__all__ = [
    "FeedbackResult",
    "PredictionLog",
    "PredictionLogError",
    "feedback",
    "predictions",
    "redact",
]

logger = logging.getLogger(__name__)

# Columns labelled_rows adds next to the features.
META_COLUMNS = ["prediction", "actual", "model_version", "created_at", "prediction_id"]
# The log only appends: measured on one core, 64 KB pages cut the writer's insert cost from 2.8 to
# 2.0 us per row against SQLite's default 4 KB (fewer page splits and WAL frames per row), at the
# price of reading a 64 KB page for each feedback id looked up (a few us each).
SQLITE_PAGE_BYTES = 65536
# Bound parameters per IN (...) clause: SQLite's default limit is 999 on old builds.
_IN_CHUNK = 500
# A dead writer is replaced after this pause, doubled with each death in a row (a writer that
# acknowledged something before dying starts the count again), up to the maximum.
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 60.0


class PredictionLogError(RuntimeError):
    """The prediction log cannot be opened or exported; the message says what to fix."""


@dataclass
class FeedbackResult:
    """What became of each label sent, by prediction id, in the order sent."""

    accepted: list[str] = field(default_factory=list)  # stored now
    unchanged: list[str] = field(default_factory=list)  # this label was stored already
    unknown: list[str] = field(default_factory=list)  # no such prediction
    conflicts: list[str] = field(default_factory=list)  # labelled before with another value


def _same_label(stored: str, sent: str) -> bool:
    """Whether two JSON labels are the same value (``5`` and ``5.0`` are)."""
    return stored == sent or json.loads(stored) == json.loads(sent)


# ------------------------------------------------------------------------------------ the queue


class _Flush:
    """Queued behind pending calls; set once everything queued before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    """Queued by close(): what precedes it is written, then the writer exits."""


_Item = Union[Columns, _Flush, _Stop]


# ------------------------------------------------------------------------------ the prediction log


def _window(since: float | None, until: float | None) -> list[ColumnElement[bool]]:
    """Half-open window [since, until) on prediction time, so consecutive windows never overlap."""
    clauses: list[ColumnElement[bool]] = []
    if since is not None:
        clauses.append(predictions.c.created_at >= since)
    if until is not None:
        clauses.append(predictions.c.created_at < until)
    return clauses


def _features_frame(connection: DbConnection, rows: list[tuple[int, str]]) -> pd.DataFrame:
    """(feature_set, JSON array) rows as one frame, a column per feature name, in row order.

    Rows of several feature sets (a log shared by two datasets' services) get the union of the
    columns, NaN where a row's set lacks one.
    """
    if not rows:
        return pd.DataFrame()
    names = feature_set_names(connection)
    sets = np.array([feature_set for feature_set, _ in rows])
    frames = []
    for feature_set in dict.fromkeys(sets.tolist()):  # first-seen order
        where = np.flatnonzero(sets == feature_set)
        values = [orjson.loads(rows[i][1]) for i in where]
        frames.append(pd.DataFrame(values, columns=names[feature_set], index=where))
    return pd.concat(frames).sort_index() if len(frames) > 1 else frames[0]


def check_layout(engine: Engine, url: str) -> None:
    """Refuse a log whose predictions table predates ``feature_sets`` (features as JSON objects):
    new rows could not be written to it, and mixing both layouts would need every reader to guess.
    """
    inspector = inspect(engine)
    if not inspector.has_table(predictions.name):
        return
    columns = {column["name"] for column in inspector.get_columns(predictions.name)}
    missing = [column.name for column in predictions.columns if column.name not in columns]
    if missing:
        raise PredictionLogError(
            f"prediction log {redact(url)} has an older table layout (no {', '.join(missing)}): "
            "export what you need with the version that wrote it, then move the database aside "
            "or set MLOOP_PREDICTION_LOG_URL to a new one"
        )


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PredictionLog:
    """Asynchronous, batched, bounded writer of predictions plus synchronous feedback and reads.

    Counters (``written_rows``, ``dropped_rows``, ``write_errors``, ``lost_rows``) only grow, so
    they map directly onto Prometheus counters. ``write_errors`` counts failed writes that lost
    rows (``lost_rows`` of them).

    Why not ``queue.Queue``: every ``put`` notifies the waiting consumer, so each prediction woke a
    second thread that then fought the event loop for the GIL; measured, that cost 40% of a one-core
    server's throughput. ``record`` copies rows under an uncontended lock instead, and the shipper wakes
    on a timer (``flush_interval_s``) or when someone waits for it (flush, close).

    The rows are written by a separate process (:mod:`service.log_writer`), except for in-memory
    SQLite, which exists only inside this process: there the shipper thread writes them itself.
    """

    def __init__(
        self,
        url: str,
        queue_size: int = 10_000,
        flush_interval_s: float = 1.0,
    ) -> None:
        if queue_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size must be >= 1, flush_interval_s > 0")
        self.url = url
        self.queue_size = queue_size
        self.flush_interval_s = flush_interval_s
        self.written_rows = 0
        self.dropped_rows = 0
        self.write_errors = 0
        self.lost_rows = 0
        self.writer_restarts = 0
        self._engine = create_log_engine(url)
        self._lock = threading.Lock()  # guards the queue, the counters and the flags
        self._pending: list[_Item] = []
        self._pending_rows = 0  # accepted and not yet written: queued, in the pipe, being written
        self._closed = False
        self._closing = threading.Event()  # ends a restart pause at once
        self._writer_lost = False
        self._generation = 0  # the writer process's incarnation: 1 for the first
        self._acked = False  # the current writer acknowledged something
        # Rows handed to the writer process and not acknowledged yet: what its death loses. Kept
        # apart from the queue, so a shipment that fails after the receiver counted it as lost is
        # not counted twice.
        self._unacked_rows = 0
        self._wake = threading.Event()
        self._shipper: threading.Thread | None = None
        self._receiver: threading.Thread | None = None
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._local_writer: BatchWriter | None = None
        self._flush_tokens = itertools.count()
        self._last_ack = time.monotonic()
        self._can_boost = can_raise_priority(WRITER_NICENESS)
        self._flushes: dict[int, _Flush] = {}
        self._logged_error = False

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def running(self) -> bool:
        """Whether rows are being written: for health checks and flush.

        A dead writer process counts once the receiver has seen its pipe close (at once, in
        practice): from then on ``record`` drops, so the two always agree.
        """
        return self._shipper is not None and self._shipper.is_alive() and not self._writer_lost

    def create_tables(self) -> None:
        """Create missing tables and switch SQLite to WAL (a persistent property of the file).

        Several service workers start at once on a fresh database: create_all checks, then
        creates, so all but one of them can find the table made in between. A second pass then
        sees it and succeeds, hence the retry.
        """
        path = sqlite_path(self.url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        check_layout(self._engine, self.url)  # before create_all: a refused log is left as it was
        for attempt in range(3):
            try:
                with self._engine.begin() as connection:
                    if path is not None:
                        # Taken by a database without tables only (the connection that creates
                        # them must set it); an existing one keeps its page size.
                        connection.exec_driver_sql(f"PRAGMA page_size = {SQLITE_PAGE_BYTES}")
                    metadata.create_all(connection)
                    for index in feedback.indexes:  # create_all adds none to an existing table
                        index.create(connection, checkfirst=True)
                break
            except SQLAlchemyError:
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))
        if path is not None:
            with self._engine.connect() as connection:
                mode = connection.exec_driver_sql("PRAGMA journal_mode = WAL").scalar()
                if str(mode).lower() != "wal":
                    logger.warning("%s: SQLite refused WAL mode (journal_mode=%s)", path, mode)

    def start(self) -> None:
        """Create the tables, start the writer process and the shipper (idempotent)."""
        if self._closed:
            raise RuntimeError("a closed PredictionLog cannot be restarted; create a new one")
        if self._shipper is not None:
            return
        self.create_tables()
        if is_sqlite_memory(self.url):
            self._local_writer = BatchWriter(self._engine)
        else:
            self._spawn_writer()
            self._receiver = threading.Thread(
                target=self._receive, name="prediction-log-receiver", daemon=True
            )
            self._receiver.start()
        self._shipper = threading.Thread(
            target=self._ship, name="prediction-log-shipper", daemon=True
        )
        self._shipper.start()

    def _spawn_writer(self) -> None:
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
        with self._lock:
            self._process, self._connection = process, ours
            self._generation += 1
            self._acked = False
            self._writer_lost = False
            self._last_ack = time.monotonic()

    def close(self, timeout: float = 5.0) -> bool:
        """Write everything queued, stop the writer and release connections.

        Returns False when the writer did not finish within ``timeout``; rows still queued then
        are lost (the threads are daemons and the process is killed, so nothing holds exit up).
        """
        with self._lock:
            self._closed = True  # record() drops from now on: nothing would write it
            self._pending.append(_Stop())
        self._closing.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in (self._shipper, self._receiver):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._process is not None:
            self._process.join(max(0.0, deadline - time.monotonic()))
            if self._process.is_alive():
                self._process.kill()
                self._process.join(1.0)
        if self._connection is not None:
            self._connection.close()
        pending = self.queue_depth()
        finished = pending == 0 and not self.running
        if not finished:
            logger.error(
                "prediction log: closed with %d row(s) unwritten (timeout %.1fs)", pending, timeout
            )
        self._engine.dispose()
        return finished

    # ---------------------------------------------------------------------------- hot path

    def record(
        self,
        model_version: str,
        ids: list[str],
        features: npt.NDArray[np.float64],
        feature_names: list[str],
        outputs: npt.NDArray[Any],
        created_at: float,
    ) -> bool:
        """Queue one prediction call for writing; False (and counted) when the queue is full.

        Called on the request path, so it never blocks, never wakes a thread and never touches the
        database: it works under a lock nobody holds for long. ``ids`` and the arrays are copied
        into column buffers (a copy of the call's rows, about a microsecond). A call is accepted
        while fewer than ``queue_size`` rows are pending, so one large call can overshoot the bound
        by its own size. A malformed call (shapes that do not agree) is accepted and counted as a
        failed write (``write_errors``, ``lost_rows``).
        """
        rows = len(ids)
        outputs = np.asarray(outputs)
        problem = malformed((model_version, ids, features, feature_names, outputs, created_at))
        with self._lock:
            if not self._accepts(rows):
                return False
            if problem is not None:
                self.write_errors += 1
                self.lost_rows += rows
            else:
                self._admit(rows)
                append_call(
                    self._pending, model_version, ids, features, feature_names, outputs, created_at
                )
        if problem is not None:
            self._report(problem)
        return True

    def enqueue(self, segment: Columns) -> bool:
        """Queue calls already in columns (the service's :class:`CallBuffer` takes them once a
        second) and have them shipped at once; False (and counted) when the queue is full.
        Calls built by the service are well-formed, so they are not checked one by one."""
        with self._lock:
            if not self._accepts(segment.rows):
                return False
            self._admit(segment.rows)
            self._pending.append(segment)
        self._wake.set()
        return True

    def _accepts(self, rows: int) -> bool:
        """Whether the queue takes ``rows`` more; if not, they are counted as dropped. Lock held."""
        if self._closed or self._writer_lost or self._pending_rows >= self.queue_size:
            self.dropped_rows += rows
            return False
        return True

    def _admit(self, rows: int) -> None:
        """Count accepted rows as pending. Lock held."""
        if not self._pending_rows:
            self._last_ack = time.monotonic()  # a backlog starts: time it from now
        self._pending_rows += rows

    def queue_depth(self) -> int:
        """Rows accepted but not yet committed (queued plus those being written)."""
        return self._pending_rows

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is written (or failed and counted).

        Without a running writer nothing can be written: returns at once, True only if nothing is
        pending.
        """
        if not self.running:
            return self.queue_depth() == 0
        marker = _Flush()
        with self._lock:
            self._pending.append(marker)
        self._wake.set()
        self._boost()  # someone waits: an idle-class writer must not wait for a free core
        return marker.done.wait(timeout) and not self._writer_lost

    def _boost(self) -> None:
        if self._process is not None and self._process.pid is not None and self._can_boost:
            self._can_boost = boost_writer(self._process.pid)

    # ---------------------------------------------------------------------------- shipping

    def _ship(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._lock:
                items, self._pending = self._pending, []
            try:
                if self._dispatch(items):
                    return
            except Exception:  # noqa: BLE001 - the shipper must outlive any bug in one batch
                logger.exception("prediction log: unexpected error in the shipper thread")

    def keep_up(self) -> None:
        """Raise a starved writer: rows are pending and none was acknowledged for BACKLOG_GRACE_S
        (by requests, or by other processes, a saturated core starves an idle-class task).

        Called by the receiver whenever a grace period passes without a message, not by the
        shipper: a shipment larger than the pipe's buffer blocks the shipper in ``send`` until the
        writer reads, which an idle-class writer on a saturated core never does (measured: with
        the check after each send, the writer stayed idle-class for seconds, the queue filled and
        rows were dropped).
        """
        with self._lock:
            behind = self._pending_rows > 0 and time.monotonic() - self._last_ack > BACKLOG_GRACE_S
        if behind:
            self._boost()

    def _dispatch(self, items: list[_Item]) -> bool:
        """Send the segments in order, each marker after the rows before it; True on stop."""
        for item in items:
            if isinstance(item, Columns):
                self._send(item)
            elif isinstance(item, _Flush):
                self._send_flush(item)
            else:
                self._send_stop()
                return True
        return False

    def _send(self, segment: Columns) -> None:
        rows = segment.rows
        if self._local_writer is not None:
            try:
                self._account(rows, write_packed(self._local_writer, segment.packed()))
            except Exception as exc:  # noqa: BLE001 - an unpicklable output, a driver bug
                self._account(rows, WriteResult(errors=1, lost=rows))
                self._report(f"{rows} row(s) not written: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            connection, generation = self._connection, self._generation
            handed_over = not self._writer_lost
            if handed_over:
                self._unacked_rows += rows
        assert connection is not None
        try:
            if not handed_over:
                raise BrokenPipeError("the writer process is gone")
            send_packed(connection, segment.packed())
        except Exception as exc:  # noqa: BLE001 - a dead writer or an unpicklable output
            with self._lock:
                # Rows the receiver already counted as lost, when it noticed the writer die
                # after they were handed over, are not counted again.
                counted = handed_over and (self._writer_lost or self._generation != generation)
                if handed_over and not counted:
                    self._unacked_rows -= rows
            if not counted:
                self._account(rows, WriteResult(errors=1, lost=rows))
            self._report(f"{rows} row(s) not sent to the writer: {type(exc).__name__}: {exc}")

    def _send_flush(self, marker: _Flush) -> None:
        if self._connection is None:
            marker.done.set()  # the local writer has written everything before it
            return
        token = next(self._flush_tokens)
        self._flushes[token] = marker
        try:
            self._connection.send(("flush", token))
        except OSError:
            self._flushes.pop(token, None)
            marker.done.set()  # flush() reports the lost writer

    def _send_stop(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.send(("stop",))
        except OSError:
            pass  # the writer is gone already; close() reports what was not written

    def _receive(self) -> None:
        """Apply the writers' acknowledgements; replace a writer that dies (until close)."""
        delay = RESTART_DELAY_S
        while True:
            connection, process = self._connection, self._process
            assert connection is not None and process is not None
            if self._receive_from(connection):
                return
            if self._acked:  # it wrote for a while: not a writer that dies at once
                delay = RESTART_DELAY_S
            self._writer_died(process, delay)
            while not self._closing.wait(delay):
                delay = min(2 * delay, MAX_RESTART_DELAY_S)
                try:
                    self._spawn_writer()
                    break
                except Exception:  # noqa: BLE001 - e.g. out of processes: try again later
                    logger.exception("prediction log: the writer could not be restarted")
            else:
                return  # closing: nothing to write any more
            with self._lock:
                self.writer_restarts += 1
            logger.warning("prediction log: writer restarted (restart %d)", self.writer_restarts)

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
                self._account(message[1], WriteResult(*message[2:]), acknowledged=True)
            elif kind == "flushed":
                self._acked = True
                marker = self._flushes.pop(message[1], None)
                if marker is not None:
                    marker.done.set()
            elif kind == "stopped":
                return True

    def _writer_died(self, process: BaseProcess, delay: float) -> None:
        """Count what the dead writer took with it; new calls are dropped until a new one runs."""
        process.join(1.0)
        with self._lock:
            self._writer_lost = True
            lost, self._unacked_rows = self._unacked_rows, 0
            self._pending_rows -= lost
            self.lost_rows += lost
            self.write_errors += 1 if lost else 0
        # Our end of its pipe stays open: the shipper may be sending on it, and a closed file
        # descriptor could be reused by the next writer's pipe. It closes when dropped.
        if not self._closed:
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

    def _account(self, rows: int, result: WriteResult, acknowledged: bool = False) -> None:
        with self._lock:
            self._acked = self._acked or acknowledged
            self._last_ack = time.monotonic()
            self._pending_rows -= rows
            if acknowledged:
                self._unacked_rows -= rows
            self.written_rows += result.written
            self.write_errors += result.errors
            self.lost_rows += result.lost

    def _report(self, message: str) -> None:
        # The first failure is an error; repeats (a database that stays down) must not flood.
        if self._logged_error:
            logger.debug("prediction log: %s", message)
        else:
            logger.error("prediction log: %s", message)
        self._logged_error = True

    # ---------------------------------------------------------------------------- feedback

    def record_feedback(
        self, items: Sequence[tuple[str, Any]], received_at: float
    ) -> FeedbackResult:
        """Store labels for known predictions; every id is reported in one of four lists.

        The policy: a prediction's first label is its label. A later one with the same value is
        reported ``unchanged``; one with another value is refused and reported as a conflict
        (never a silent overwrite: whoever labels second cannot change what the next model learns).
        Within ``items`` the same holds in order. Flushes first, so a label sent right after its
        prediction is not reported unknown. Unknown ids are reported, never dropped silently.
        """
        if not items:
            return FeedbackResult()
        if not self.flush():
            logger.warning("prediction log: flush before feedback timed out; ids may be unknown")
        labels: list[tuple[str, str]] = []
        for prediction_id, actual in items:
            # numpy scalars (np.int64 is no int) become plain Python values for JSON
            value = actual.item() if isinstance(actual, np.generic) else actual
            labels.append((str(prediction_id), json.dumps(value)))
        for attempt in range(3):
            try:
                return self._store_labels(labels, received_at)
            except IntegrityError:
                # Another request labelled one of these ids between our read and our insert:
                # read again, and that label now counts as the first.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _store_labels(self, labels: list[tuple[str, str]], received_at: float) -> FeedbackResult:
        ids = list(dict.fromkeys(prediction_id for prediction_id, _ in labels))
        result = FeedbackResult()
        with self._engine.begin() as connection:
            known: set[str] = set()
            stored: dict[str, str] = {}
            for chunk in _chunks(ids):
                found = connection.execute(
                    select(predictions.c.id).where(predictions.c.id.in_(chunk))
                )
                known.update(str(value) for value in found.scalars())
                labelled = connection.execute(
                    select(feedback.c.prediction_id, feedback.c.actual).where(
                        feedback.c.prediction_id.in_(chunk)
                    )
                )
                stored.update((str(row[0]), str(row[1])) for row in labelled)
            new: list[dict[str, Any]] = []
            for prediction_id, actual in labels:
                if prediction_id not in known:
                    result.unknown.append(prediction_id)
                elif prediction_id not in stored:
                    stored[prediction_id] = actual
                    result.accepted.append(prediction_id)
                    new.append(
                        {
                            "prediction_id": prediction_id,
                            "actual": actual,
                            "received_at": float(received_at),
                        }
                    )
                elif _same_label(stored[prediction_id], actual):
                    result.unchanged.append(prediction_id)
                else:
                    result.conflicts.append(prediction_id)
            if new:
                connection.execute(feedback.insert(), new)
        return result

    # ------------------------------------------------------------------------------- reads

    def labelled_rows(
        self,
        since: float | None = None,
        until: float | None = None,
        received_since: float | None = None,
    ) -> pd.DataFrame:
        """Predictions made in [since, until) that have a label, one column per feature; with
        ``received_since``, only labels received from then on.

        Columns: the features, then ``prediction``, ``actual``, ``model_version``, ``created_at``,
        ``prediction_id``; ordered by prediction time.
        """
        clauses = _window(since, until)
        if received_since is not None:
            clauses.append(feedback.c.received_at >= received_since)
        statement = (
            select(
                predictions.c.feature_set,
                predictions.c.features,
                predictions.c.prediction,
                feedback.c.actual,
                predictions.c.model_version,
                predictions.c.created_at,
                predictions.c.id,
            )
            .select_from(predictions.join(feedback, feedback.c.prediction_id == predictions.c.id))
            .where(*clauses)
            .order_by(predictions.c.created_at, predictions.c.id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(statement).all()
            features = _features_frame(connection, [(row[0], row[1]) for row in rows])
        meta = pd.DataFrame(
            {
                "prediction": [json.loads(row[2]) for row in rows],
                "actual": [json.loads(row[3]) for row in rows],
                "model_version": [str(row[4]) for row in rows],
                "created_at": np.array([row[5] for row in rows], dtype=float),
                "prediction_id": [str(row[6]) for row in rows],
            },
            columns=META_COLUMNS,
        )
        return pd.concat([features, meta], axis=1)

    def recent_features(
        self, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Feature values of every prediction made in [since, until), oldest first.

        ``limit`` keeps only the most recent rows: decoding millions of rows for a drift report
        costs more than the extra rows add to its precision.
        """
        statement = select(predictions.c.feature_set, predictions.c.features).where(
            *_window(since, until)
        )
        with self._engine.connect() as connection:
            if limit is not None:
                newest = statement.order_by(
                    predictions.c.created_at.desc(), predictions.c.id.desc()
                ).limit(limit)
                rows = [(row[0], row[1]) for row in connection.execute(newest)]
                rows.reverse()
            else:
                oldest = statement.order_by(predictions.c.created_at, predictions.c.id)
                rows = [(row[0], row[1]) for row in connection.execute(oldest)]
            return _features_frame(connection, rows)


if __name__ == "__main__":  # the CLI's old address: `python -m service.prediction_log export`
    import runpy

    runpy.run_module("service.log_export", run_name="__main__")
