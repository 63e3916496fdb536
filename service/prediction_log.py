"""The prediction log: every prediction and every feedback label, in a real database.

Predictions are what drift monitoring compares with training; predictions joined with their labels
are what a retrain learns from (exported into ``data/feedback/``, appended by ``mloop.ingest``).

The request path must never wait for the database, so :meth:`PredictionLog.record` only copies
the call's rows into bounded in-memory column buffers. Once a second a shipper thread hands them
to the writer process (:mod:`service.log_writer`), which turns them into rows and writes each
shipment in one transaction. When the buffers are full the call is dropped and counted: losing log
rows under overload is better than slowing every prediction down. The tables and the database
settings are in :mod:`service.log_store`.

CLI::

    python -m service.prediction_log export --db sqlite:///predictions.db --bundle models/champion \\
        --out data/feedback/export-20240601T120000.parquet [--since ISO] [--until ISO]
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import typer
from sqlalchemy import delete, inspect, select
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from mloop.config import ConfigError, DatasetSchema, load_schema
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

__all__ = ["PredictionLog", "PredictionLogError", "feedback", "predictions", "redact"]

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///predictions.db"
# mloop.bundle's file names, repeated: importing it loads the model runtimes (seconds, for a CLI
# that reads two files); tests/service/test_prediction_log.py checks that they agree.
SCHEMA_FILE = "schema.yaml"
REFERENCE_FILE = "reference_stats.json"
META_FILE = "bundle.json"
EXPORT_SUFFIXES = (".csv", ".parquet")
# Columns labelled_rows adds next to the features.
META_COLUMNS = ["prediction", "actual", "model_version", "created_at", "prediction_id"]
# The log only appends: measured on one core, 64 KB pages cut the writer's insert cost from 2.8 to
# 2.0 us per row against SQLite's default 4 KB (fewer page splits and WAL frames per row), at the
# price of reading a 64 KB page for each feedback id looked up (a few us each).
SQLITE_PAGE_BYTES = 65536
# Bound parameters per IN (...) clause: SQLite's default limit is 999 on old builds.
_IN_CHUNK = 500


class PredictionLogError(RuntimeError):
    """The prediction log cannot be opened or exported; the message says what to fix."""


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
        self._engine = create_log_engine(url)
        self._lock = threading.Lock()  # guards the queue, the counters and the flags
        self._pending: list[_Item] = []
        self._pending_rows = 0  # accepted and not yet written: queued, in the pipe, being written
        self._closed = False
        self._writer_lost = False
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
            # spawn, not fork: forking a process that runs threads (the event loop's executor,
            # the housekeeper) can copy a held lock into the child.
            context = multiprocessing.get_context("spawn")
            ours, theirs = context.Pipe()
            self._process = context.Process(
                target=run_writer,
                args=(self.url, theirs, WRITER_NICENESS),
                name="prediction-log-writer",
                daemon=True,
            )
            self._process.start()
            theirs.close()
            self._connection = ours
            self._receiver = threading.Thread(
                target=self._receive, name="prediction-log-receiver", daemon=True
            )
            self._receiver.start()
        self._shipper = threading.Thread(
            target=self._ship, name="prediction-log-shipper", daemon=True
        )
        self._shipper.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Write everything queued, stop the writer and release connections.

        Returns False when the writer did not finish within ``timeout``; rows still queued then
        are lost (the threads are daemons and the process is killed, so nothing holds exit up).
        """
        with self._lock:
            self._closed = True  # record() drops from now on: nothing would write it
            self._pending.append(_Stop())
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
        assert self._connection is not None
        with self._lock:
            handed_over = not self._writer_lost
            if handed_over:
                self._unacked_rows += rows
        try:
            if not handed_over:
                raise BrokenPipeError("the writer process is gone")
            send_packed(self._connection, segment.packed())
        except Exception as exc:  # noqa: BLE001 - a dead writer or an unpicklable output
            with self._lock:
                # Rows the receiver already counted as lost, when it noticed the writer die
                # after they were handed over, are not counted again.
                counted = handed_over and self._writer_lost
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
        """Apply the writer's acknowledgements; notice when the writer dies."""
        assert self._connection is not None
        while True:
            try:
                if not self._connection.poll(BACKLOG_GRACE_S):
                    self.keep_up()
                    continue
                message = self._connection.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "done":
                self._account(message[1], WriteResult(*message[2:]), acknowledged=True)
            elif kind == "flushed":
                marker = self._flushes.pop(message[1], None)
                if marker is not None:
                    marker.done.set()
            elif kind == "stopped":
                return
        # The pipe closed without "stopped": the writer process died.
        code = self._process.exitcode if self._process is not None else None
        with self._lock:
            self._writer_lost = True
            lost, self._unacked_rows = self._unacked_rows, 0
            self._pending_rows -= lost
            self.lost_rows += lost
            self.write_errors += 1 if lost else 0
        logger.error(
            "prediction log: the writer process exited (code %s); %d row(s) lost, new "
            "predictions are dropped and counted until the service restarts",
            code,
            lost,
        )
        for marker in list(self._flushes.values()):
            marker.done.set()

    def _account(self, rows: int, result: WriteResult, acknowledged: bool = False) -> None:
        with self._lock:
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
        self, items: list[tuple[str, float | int | str]], received_at: float
    ) -> tuple[list[str], list[str]]:
        """Store labels for known predictions; return (accepted ids, unknown ids), in input order.

        Flushes first so a label sent right after its prediction is not reported unknown. A label
        sent again replaces the previous one (the last in ``items`` wins). Unknown ids are
        returned, never dropped silently: the caller can tell the client.
        """
        if not items:
            return [], []
        if not self.flush():
            logger.warning("prediction log: flush before feedback timed out; ids may be unknown")
        labels: dict[str, str] = {}
        for prediction_id, actual in items:
            labels.pop(str(prediction_id), None)  # re-insert: keep the position of the last one
            # numpy scalars (np.int64 is no int) become plain Python values for JSON
            value = actual.item() if isinstance(actual, np.generic) else actual
            labels[str(prediction_id)] = json.dumps(value)
        ids = list(labels)
        with self._engine.begin() as connection:
            known: set[str] = set()
            for chunk in _chunks(ids):
                found = connection.execute(
                    select(predictions.c.id).where(predictions.c.id.in_(chunk))
                )
                known.update(str(value) for value in found.scalars())
            accepted = [i for i in ids if i in known]
            if accepted:
                for chunk in _chunks(accepted):
                    connection.execute(delete(feedback).where(feedback.c.prediction_id.in_(chunk)))
                connection.execute(
                    feedback.insert(),
                    [
                        {"prediction_id": i, "actual": labels[i], "received_at": float(received_at)}
                        for i in accepted
                    ],
                )
        unknown = [i for i in ids if i not in known]
        return accepted, unknown

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

    # ------------------------------------------------------------------------------ export

    def export_labelled(
        self,
        path: Path,
        schema: DatasetSchema,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        """Write labelled predictions as dataset rows that the ingest stage can append.

        The file has exactly ``schema.columns`` in order (features, and the target holding the
        label), integer and boolean columns cast per the schema, CSV or Parquet by suffix. It is
        written to a temp name and renamed, so ingest never reads half a file; with no labelled
        rows nothing is written (an empty file would still change the data DVC tracks).
        """
        if path.suffix not in EXPORT_SUFFIXES:
            raise PredictionLogError(f"{path}: export format must be one of {EXPORT_SUFFIXES}")
        labelled = self.labelled_rows(since, until)
        if labelled.empty:
            return 0
        missing = [name for name in schema.features if name not in labelled.columns]
        if missing:
            raise PredictionLogError(
                f"logged predictions lack feature(s) {', '.join(missing)} of schema "
                f"{schema.name!r}: were they made by a model of another dataset?"
            )
        frame = labelled[schema.features].copy()
        frame[schema.target] = labelled["actual"]
        frame = _cast_to_schema(frame[list(schema.columns)], schema)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            if path.suffix == ".parquet":
                frame.to_parquet(tmp_name, index=False)
            else:
                frame.to_csv(tmp_name, index=False)
            os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would hide the rows from other users
            os.replace(tmp_name, path)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return len(frame)


def _cast_to_schema(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Give each column its schema dtype where that loses nothing; else leave it for validate.

    Labels come back from JSON as Python values (an int target may arrive as ``3.0``); a value
    that is not exactly representable (``2.5`` in an int column) is kept as is so the validate
    stage reports it with its row, rather than being silently truncated here.
    """
    out = frame.copy()
    for name, spec in schema.columns.items():
        values = pd.to_numeric(out[name], errors="coerce")
        bad = out[name][values.isna() & out[name].notna()]
        if len(bad):
            raise PredictionLogError(
                f"column {name!r} holds {len(bad)} non-numeric value(s) (e.g. {bad.iloc[0]!r}); "
                f"the schema says {spec.dtype}"
            )
        if spec.dtype == "float":
            out[name] = values.astype("float64")
        elif spec.dtype == "int" and values.notna().all() and (values == values.round()).all():
            out[name] = values.astype("int64")
        elif spec.dtype == "bool" and values.isin([0, 1]).all():
            out[name] = values.astype(bool)
        else:
            logger.warning("export: column %r has values that are not %s", name, spec.dtype)
            out[name] = values
    return out


# ---------------------------------------------------------------------------------- CLI helpers


def parse_time(text: str | None) -> float | None:
    """ISO 8601 date or date-time to epoch seconds; a time without an offset is taken as UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PredictionLogError(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-06-01 or 2024-06-01T12:00:00+02:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def open_existing(url: str) -> PredictionLog:
    """A PredictionLog on a database the service has already written, for the offline tools.

    A missing SQLite file is reported rather than created: a typo in ``--db`` would otherwise
    produce an empty log and a misleading "0 rows".
    """
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise PredictionLogError(f"prediction log database {path} does not exist")
    log = PredictionLog(url)
    try:
        has_table = inspect(log.engine).has_table(predictions.name)
    except SQLAlchemyError as exc:
        log.close()
        raise PredictionLogError(f"cannot open prediction log {redact(url)}: {exc}") from None
    if not has_table:
        log.close()
        raise PredictionLogError(f"{redact(url)} has no predictions table (not a prediction log)")
    try:
        check_layout(log.engine, url)
    except PredictionLogError:
        log.close()
        raise
    return log


def load_bundle_schema(bundle: Path) -> DatasetSchema:
    """The dataset schema a champion bundle was trained on (without loading its model)."""
    if not bundle.is_dir():
        raise PredictionLogError(f"bundle directory {bundle} does not exist")
    try:
        return load_schema(bundle / SCHEMA_FILE)
    except ConfigError as exc:
        raise PredictionLogError(str(exc)) from None


app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.callback()
def _cli() -> None:
    """Offline tools on the prediction log."""


@app.command()
def export(
    db: str = typer.Option(DEFAULT_DB_URL, "--db", help="SQLAlchemy URL of the prediction log"),
    bundle: Path = typer.Option(
        Path("models/champion"), "--bundle", help="champion bundle: its schema.yaml is used"
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="output .parquet or .csv",
        show_default="data/feedback/export-<UTC time>.parquet",
    ),
    since: str | None = typer.Option(None, "--since", help="ISO time, inclusive (UTC if naive)"),
    until: str | None = typer.Option(None, "--until", help="ISO time, exclusive (UTC if naive)"),
) -> None:
    """Export labelled predictions as dataset rows for the next retrain (ingest's extra rows)."""
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        out = Path("data/feedback") / f"export-{stamp}.parquet"
    try:
        schema = load_bundle_schema(bundle)
        start, end = parse_time(since), parse_time(until)
        log = open_existing(db)
        try:
            count = log.export_labelled(out, schema, since=start, until=end)
        finally:
            log.close()
    except (PredictionLogError, SQLAlchemyError) as exc:
        typer.echo(f"export failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if count:
        typer.echo(f"exported {count} labelled row(s) to {out}")
    else:
        typer.echo("no labelled predictions in the window: nothing written")


if __name__ == "__main__":
    app()
