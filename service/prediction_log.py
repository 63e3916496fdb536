"""The prediction log: every prediction and every feedback label, in a real database.

Predictions are what drift monitoring compares with training; predictions joined with their labels
are what a retrain learns from (exported into ``data/feedback/``, appended by ``mloop.ingest``).

The request path must never wait for the database, so :meth:`PredictionLog.record` only puts one
tuple on a bounded in-memory queue; a single background thread turns calls into rows and writes them
in batches (one transaction each). When the queue is full the call is dropped and counted: losing
log rows under overload is better than slowing every prediction down.

SQLite is the default (WAL, so the CLI tools read while the service writes; busy_timeout, so
several writer processes wait for each other instead of failing; synchronous=NORMAL, durable across
application crashes, at most the last commits lost on power loss). Any other SQLAlchemy URL works:
only SQLAlchemy Core and portable types are used. Predictions and labels are stored as JSON text so
one table holds regression values and class labels alike, and values round-trip exactly.

CLI::

    python -m service.prediction_log export --db sqlite:///predictions.db --bundle models/champion \\
        --out data/feedback/export-20240601T120000.parquet [--since ISO] [--until ISO]
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import typer
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    inspect,
    make_url,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement

from mloop.config import ConfigError, DatasetSchema, load_schema

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///predictions.db"
# mloop.bundle's file names, repeated: importing it loads the model runtimes (seconds, for a CLI
# that reads two files); tests/service/test_prediction_log.py checks that they agree.
SCHEMA_FILE = "schema.yaml"
REFERENCE_FILE = "reference_stats.json"
META_FILE = "bundle.json"
SQLITE_BUSY_TIMEOUT_MS = 5000
EXPORT_SUFFIXES = (".csv", ".parquet")
# Columns labelled_rows adds next to the features.
META_COLUMNS = ["prediction", "actual", "model_version", "created_at", "prediction_id"]
# Bound parameters per IN (...) clause: SQLite's default limit is 999 on old builds.
_IN_CHUNK = 500

# TEXT everywhere (as documented), except where a TEXT primary key is impossible (MySQL).
_Id = Text().with_variant(String(255), "mysql", "mariadb")

metadata = MetaData()
predictions = Table(
    "predictions",
    metadata,
    Column("id", _Id, primary_key=True),
    Column("created_at", Float, nullable=False),  # epoch seconds, UTC
    Column("model_version", Text, nullable=False),
    Column("features", Text, nullable=False),  # JSON object: feature name -> value
    Column("prediction", Text, nullable=False),  # JSON value: number or class label
    Index("ix_predictions_created_at", "created_at"),
)
feedback = Table(
    "feedback",
    metadata,
    Column(
        "prediction_id", _Id, ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("actual", Text, nullable=False),  # JSON value: the observed target
    Column("received_at", Float, nullable=False),
)


class PredictionLogError(RuntimeError):
    """The prediction log cannot be opened or exported; the message says what to fix."""


# ------------------------------------------------------------------------------------ the queue

# One record() call, exactly as the request handler passed it: converting to rows is writer work.
_Call = tuple[str, list[str], npt.NDArray[np.float64], list[str], npt.NDArray[Any], float]


class _Flush:
    """Queued behind pending calls; the writer sets the event once everything before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    """Queued by close(): the writer writes what precedes it, then exits."""


_Item = Union[_Call, _Flush, _Stop]


# ---------------------------------------------------------------------------------- the engine


def _is_sqlite_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory:")


def create_log_engine(url: str) -> Engine:
    """Engine with the per-connection SQLite settings that make one shared file safe to use.

    busy_timeout and synchronous are per connection, hence the connect hook; WAL is a property of
    the database file and is set once when the tables are created (:meth:`PredictionLog.start`).
    An in-memory SQLite database lives in one connection, so it is shared across threads.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if _is_sqlite_memory(parsed.database):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    return engine


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or _is_sqlite_memory(parsed.database):
        return None
    return Path(str(parsed.database))


def redact(url: str) -> str:
    """The URL without its password, for messages and reports."""
    return make_url(url).render_as_string(hide_password=True)


# ------------------------------------------------------------------------------ the prediction log


def _window(since: float | None, until: float | None) -> list[ColumnElement[bool]]:
    """Half-open window [since, until) on prediction time, so consecutive windows never overlap."""
    clauses: list[ColumnElement[bool]] = []
    if since is not None:
        clauses.append(predictions.c.created_at >= since)
    if until is not None:
        clauses.append(predictions.c.created_at < until)
    return clauses


def _call_rows(call: _Call) -> list[dict[str, Any]]:
    """Rows of one call, JSON-encoded with orjson: the stdlib encoder costs ~5x more per row, which
    is CPU taken from requests on a one-core server (orjson also writes the shortest exact repr)."""
    model_version, ids, features, names, outputs, created_at = call
    n = len(ids)
    if features.ndim != 2 or features.shape != (n, len(names)) or len(outputs) != n:
        raise ValueError(
            f"malformed record call: {n} ids, features {features.shape}, {len(names)} names, "
            f"{len(outputs)} outputs"
        )
    created = float(created_at)
    version = str(model_version)
    return [
        {
            "id": str(prediction_id),
            "created_at": created,
            "model_version": version,
            "features": orjson.dumps(dict(zip(names, row))).decode(),
            "prediction": orjson.dumps(output).decode(),
        }
        for prediction_id, row, output in zip(ids, features.tolist(), outputs.tolist())
    ]


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PredictionLog:
    """Asynchronous, batched, bounded writer of predictions plus synchronous feedback and reads.

    Counters (``written_rows``, ``dropped_rows``, ``write_errors``, ``lost_rows``) only grow, so
    they map directly onto Prometheus counters. ``write_errors`` counts failed writes that lost
    rows (``lost_rows`` of them); a failed batch is first retried call by call, so one bad call
    (e.g. a duplicate prediction id) does not take the rest of its batch with it.

    Why not ``queue.Queue``: every ``put`` notifies the waiting writer thread, so each prediction
    woke a second thread that then fought the event loop for the GIL; measured, that halved the
    throughput of a one-core server. Here ``record`` appends to a list under an uncontended lock,
    and the writer wakes on a timer (``flush_interval_s``) or when someone waits for it (flush,
    close), then takes the whole list at once.
    """

    def __init__(
        self,
        url: str,
        queue_size: int = 10_000,
        batch_size: int = 512,
        flush_interval_s: float = 0.2,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size and batch_size must be >= 1, flush_interval_s > 0")
        self.url = url
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.written_rows = 0
        self.dropped_rows = 0
        self.write_errors = 0
        self.lost_rows = 0
        self._engine = create_log_engine(url)
        self._lock = threading.Lock()  # guards the four fields below
        self._pending: list[_Item] = []
        self._pending_rows = 0  # accepted and not yet written: queued plus the batch in hand
        self._closed = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged_error = False

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def running(self) -> bool:
        """Whether the writer thread is alive: for health checks."""
        return self._thread is not None and self._thread.is_alive()

    def create_tables(self) -> None:
        """Create missing tables and switch SQLite to WAL (a persistent property of the file).

        Several service workers start at once on a fresh database: create_all checks, then
        creates, so all but one of them can find the table made in between. A second pass then
        sees it and succeeds, hence the retry.
        """
        path = sqlite_path(self.url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                metadata.create_all(self._engine)
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
        """Create the tables and start the one writer thread (idempotent)."""
        if self._closed:
            raise RuntimeError("a closed PredictionLog cannot be restarted; create a new one")
        if self.running:
            return
        self.create_tables()
        self._thread = threading.Thread(
            target=self._writer, name="prediction-log-writer", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Write everything queued, stop the writer and release connections.

        Returns False when the writer did not finish within ``timeout``; rows still queued then
        are lost (the thread is a daemon, so it never holds the process up at exit).
        """
        with self._lock:
            self._closed = True  # record() drops from now on: nothing would write it
            self._pending.append(_Stop())
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
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
        database: one append under a lock nobody holds for long. ``ids`` and the arrays are queued
        by reference, not copied (a copy would be per-row work): the caller must not modify them
        afterwards. A call is accepted while fewer than ``queue_size`` rows are pending, so one
        large call can overshoot the bound by its own size. A malformed call (shapes that do not
        agree) is detected by the writer and counted as a write error.
        """
        rows = len(ids)
        with self._lock:
            if self._closed or self._pending_rows >= self.queue_size:
                self.dropped_rows += rows
                return False
            self._pending_rows += rows
            self._pending.append((model_version, ids, features, feature_names, outputs, created_at))
        return True

    def queue_depth(self) -> int:
        """Rows accepted but not yet committed (queued plus the batch being written)."""
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
        return marker.done.wait(timeout)

    # ------------------------------------------------------------------------------ writer

    def _writer(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._lock:
                items, self._pending = self._pending, []
            try:
                if self._write_items(items):
                    return
            except Exception:  # noqa: BLE001 - the writer must outlive any bug in one batch
                logger.exception("prediction log: unexpected error in the writer thread")
                self.write_errors += 1

    def _write_items(self, items: list[_Item]) -> bool:
        """Write the calls in batches of about batch_size rows; True once a stop marker is seen.

        Markers are answered only after every call queued before them is written.
        """
        batch: list[_Call] = []
        rows = 0
        stop = False
        for item in items:
            if isinstance(item, tuple):
                batch.append(item)
                rows += len(item[1])
                if rows >= self.batch_size:
                    self._write_batch(batch, rows)
                    batch, rows = [], 0
                continue
            self._write_batch(batch, rows)
            batch, rows = [], 0
            if isinstance(item, _Flush):
                item.done.set()
            else:
                stop = True
        self._write_batch(batch, rows)
        return stop

    def _write_batch(self, calls: list[_Call], rows: int) -> None:
        if not calls:
            return
        try:
            self._write_calls(calls)
        except Exception as exc:  # noqa: BLE001 - the items after this batch must still be written
            self._count_error(rows, exc)
        finally:
            with self._lock:
                self._pending_rows -= rows

    def _write_calls(self, calls: list[_Call]) -> None:
        converted: list[tuple[int, list[dict[str, Any]]]] = []
        for call in calls:
            try:
                converted.append((len(call[1]), _call_rows(call)))
            except Exception as exc:  # noqa: BLE001 - a bad call must not cost the others
                self._count_error(len(call[1]), exc)
        if not converted:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    predictions.insert(), [row for _, rows in converted for row in rows]
                )
            self.written_rows += sum(n for n, _ in converted)
            return
        except SQLAlchemyError as exc:
            if len(converted) == 1:
                self._count_error(converted[0][0], exc)
                return
            logger.warning("prediction log: batch insert failed (%s); retrying call by call", exc)
        for n, rows in converted:
            try:
                with self._engine.begin() as connection:
                    connection.execute(predictions.insert(), rows)
                self.written_rows += n
            except SQLAlchemyError as exc:
                self._count_error(n, exc)

    def _count_error(self, rows: int, exc: BaseException) -> None:
        self.write_errors += 1
        self.lost_rows += rows
        # The first failure gets a traceback; a database that stays down must not flood the log.
        logger.error(
            "prediction log: %d row(s) not written: %s", rows, exc, exc_info=not self._logged_error
        )
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

    def labelled_rows(self, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """Predictions made in [since, until) that have a label, one column per feature.

        Columns: the features, then ``prediction``, ``actual``, ``model_version``, ``created_at``,
        ``prediction_id``; ordered by prediction time.
        """
        statement = (
            select(
                predictions.c.features,
                predictions.c.prediction,
                feedback.c.actual,
                predictions.c.model_version,
                predictions.c.created_at,
                predictions.c.id,
            )
            .select_from(predictions.join(feedback, feedback.c.prediction_id == predictions.c.id))
            .where(*_window(since, until))
            .order_by(predictions.c.created_at, predictions.c.id)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(statement).all()
        features = self._features_frame(row[0] for row in rows)
        meta = pd.DataFrame(
            {
                "prediction": [json.loads(row[1]) for row in rows],
                "actual": [json.loads(row[2]) for row in rows],
                "model_version": [str(row[3]) for row in rows],
                "created_at": np.array([row[4] for row in rows], dtype=float),
                "prediction_id": [str(row[5]) for row in rows],
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
        statement = select(predictions.c.features).where(*_window(since, until))
        if limit is not None:
            newest = statement.order_by(predictions.c.created_at.desc(), predictions.c.id.desc())
            with self._engine.connect() as connection:
                values = list(connection.execute(newest.limit(limit)).scalars())
            values.reverse()
        else:
            oldest = statement.order_by(predictions.c.created_at, predictions.c.id)
            with self._engine.connect() as connection:
                values = list(connection.execute(oldest).scalars())
        return self._features_frame(values)

    @staticmethod
    def _features_frame(encoded: Iterable[str]) -> pd.DataFrame:
        records = [json.loads(text) for text in encoded]
        if not records:
            return pd.DataFrame()
        return pd.DataFrame.from_records(records)

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
