"""The prediction log's tables and the one function that writes predictions into them.

Kept apart from :mod:`service.prediction_log` because the writer process imports only this: no
pandas, no Typer, no mloop, so it starts in well under a second.

Predictions and labels are stored as JSON text so one table holds regression values and class labels
alike, and values round-trip exactly. A row's features are a JSON array in the order of its
``feature_sets`` entry (the model's feature names, stored once): measured on one core against a
500,000-row log, a JSON object with the names in every row took 4.2 us per row to build and insert
and twice the space, an array 2.2 us (with zero-padded prediction ids, which the primary key
appends to instead of splitting pages, and 100 rows per INSERT).

SQLite is the default (WAL, so the CLI tools read while the service writes; busy_timeout, so
several writer processes wait for each other instead of failing; synchronous=NORMAL, durable across
application crashes, at most the last commits lost on power loss). Any other SQLAlchemy URL works:
only SQLAlchemy Core and portable types are used.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    make_url,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

logger = logging.getLogger("service.prediction_log")

SQLITE_BUSY_TIMEOUT_MS = 5000
ERROR_LOG_INTERVAL_S = 60.0

# One record() call, exactly as the request handler passed it: (model version, prediction ids,
# features in the model's order, feature names, outputs, epoch seconds).
Call = tuple[str, list[str], npt.NDArray[np.float64], list[str], npt.NDArray[Any], float]

# TEXT everywhere (as documented), except where a TEXT primary key is impossible (MySQL).
_Id = Text().with_variant(String(255), "mysql", "mariadb")

metadata = MetaData()
feature_sets = Table(
    "feature_sets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("names", Text, nullable=False),  # JSON array of feature names, in the model's order
)
predictions = Table(
    "predictions",
    metadata,
    Column("id", _Id, primary_key=True),
    Column("created_at", Float, nullable=False),  # epoch seconds, UTC
    Column("model_version", Text, nullable=False),
    Column("feature_set", Integer, ForeignKey("feature_sets.id"), nullable=False),
    Column("features", Text, nullable=False),  # JSON array of values, in feature_set's order
    Column("prediction", Text, nullable=False),  # JSON value: number or class label
    Index("ix_predictions_created_at", "created_at"),
)
INSERT_COLUMNS = ("id", "created_at", "model_version", "feature_set", "features", "prediction")
Row = tuple[str, float, str, int, str, str]
ROWS_PER_INSERT = 100  # 600 bound values: under SQLite's oldest limit of 999 per statement
INSERTS_PER_PAUSE = 2  # ~0.4 ms of inserting on one core between two pauses
feedback = Table(
    "feedback",
    metadata,
    Column(
        "prediction_id", _Id, ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("actual", Text, nullable=False),  # JSON value: the observed target
    Column("received_at", Float, nullable=False),
    # The live-error gauges read the labels received recently: with this index the database
    # starts from those few labels, instead of every prediction of the window (measured: 0.25 s
    # per refresh on a 2-million-row log with no label at all).
    Index("ix_feedback_received_at", "received_at"),
)


# ---------------------------------------------------------------------------------- the engine


def is_sqlite_memory(url: str) -> bool:
    """An in-memory SQLite database: it exists inside one process only."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and _is_memory_name(parsed.database)


def _is_memory_name(database: str | None) -> bool:
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
    if _is_memory_name(parsed.database):
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
    if parsed.get_backend_name() != "sqlite" or _is_memory_name(parsed.database):
        return None
    return Path(str(parsed.database))


def redact(url: str) -> str:
    """The URL without its password, for messages and reports."""
    return make_url(url).render_as_string(hide_password=True)


# ------------------------------------------------------------------------------------ writing


def malformed(call: Call) -> str | None:
    """Why a call cannot become rows (shapes that disagree, ids that are not text), or None."""
    _, ids, features, names, outputs, _ = call
    n = len(ids)
    if features.ndim != 2 or features.shape != (n, len(names)) or len(outputs) != n:
        return (
            f"malformed record call: {n} ids, features {features.shape}, {len(names)} names, "
            f"{len(outputs)} outputs"
        )
    if not (type(ids[0]) is str if n == 1 else all(type(i) is str for i in ids)):
        return "malformed record call: prediction ids must be strings"
    return None


def call_rows(call: Call, feature_set: int) -> list[Row]:
    """Rows of one call, JSON-encoded with orjson (the stdlib encoder costs ~5x more per row;
    orjson also writes the shortest repr that reads back to the same float)."""
    problem = malformed(call)
    if problem is not None:
        raise ValueError(problem)
    model_version, ids, features, _, outputs, created_at = call
    created = float(created_at)
    version = str(model_version)
    return [
        (str(prediction_id), created, version, feature_set, orjson.dumps(row).decode(),
         orjson.dumps(output).decode())
        for prediction_id, row, output in zip(ids, features.tolist(), outputs.tolist())
    ]  # fmt: skip


def feature_set_id(connection: Connection, names: list[str]) -> int:
    """The ``feature_sets`` id of these names in this order, added if new.

    Two writers adding the same new set at once both insert it; readers map either id to the same
    names, so that costs a row, not correctness.
    """
    encoded = orjson.dumps(names).decode()
    found = connection.execute(
        select(feature_sets.c.id).where(feature_sets.c.names == encoded).order_by(feature_sets.c.id)
    ).first()
    if found is not None:
        return int(found[0])
    inserted = connection.execute(feature_sets.insert().values(names=encoded))
    key = inserted.inserted_primary_key
    assert key is not None
    return int(key[0])


def feature_set_names(connection: Connection) -> dict[int, list[str]]:
    return {
        int(row.id): list(orjson.loads(row.names))
        for row in connection.execute(select(feature_sets.c.id, feature_sets.c.names))
    }


@dataclass
class WriteResult:
    """What one write did: rows committed, failed writes, rows those failures lost."""

    written: int = 0
    errors: int = 0
    lost: int = 0

    def add(self, other: WriteResult) -> None:
        self.written += other.written
        self.errors += other.errors
        self.lost += other.lost


class _Insert:
    """``INSERT INTO predictions`` of ``rows`` rows, compiled once for the engine's dialect, its
    values bound by name (``column_row``) or, for a positional parameter style, in the order the
    compiled statement lists them."""

    def __init__(self, engine: Engine, rows: int) -> None:
        statement = predictions.insert().values(
            [{name: bindparam(f"{name}_{r}") for name in INSERT_COLUMNS} for r in range(rows)]
        )
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.rows = rows
        self.places: list[tuple[int, int]] | None = None  # (row, column) per position
        if engine.dialect.positional:
            where = {
                f"{name}_{r}": (r, c) for r in range(rows) for c, name in enumerate(INSERT_COLUMNS)
            }
            self.places = [where[name] for name in compiled.positiontup or []]
        self.row_major = self.places == [
            (r, c) for r in range(rows) for c in range(len(INSERT_COLUMNS))
        ]

    def run(self, connection: Connection, chunks: list[list[Row]]) -> None:
        """One executemany over chunks of exactly ``rows`` rows each."""
        parameters: Any
        if self.row_major:
            flat = itertools.chain.from_iterable  # C-level: a generator here cost 0.6 us per row
            parameters = [tuple(flat(chunk)) for chunk in chunks]
        elif self.places is not None:
            parameters = [tuple(chunk[r][c] for r, c in self.places) for chunk in chunks]
        else:
            parameters = [
                {f"{name}_{r}": value for r, row in enumerate(chunk)
                 for name, value in zip(INSERT_COLUMNS, row)}
                for chunk in chunks
            ]  # fmt: skip
        connection.exec_driver_sql(self.sql, parameters)


class BatchWriter:
    """Writes calls in one transaction; a failed batch is retried call by call, so one bad call
    (e.g. a duplicate prediction id) does not take the rest of its batch with it."""

    def __init__(self, engine: Engine, pause: Callable[[], None] | None = None) -> None:
        """``pause`` is called between statements of a large insert (the writer process yields
        its core there, see :mod:`service.log_writer`)."""
        self.engine = engine
        self.pause = pause
        self._last_error_log = -ERROR_LOG_INTERVAL_S
        self._failures_since_log = 0
        self._feature_sets: dict[tuple[str, ...], int] = {}
        # The inserts compiled once for this database's parameter style and run through the
        # driver's executemany: SQLAlchemy's per-row parameter processing cost more than the insert.
        self._one = _Insert(engine, 1)
        self._many = _Insert(engine, ROWS_PER_INSERT)

    def feature_set(self, names: list[str]) -> int:
        """The id of a feature name list, looked up (or added) once per writer."""
        key = tuple(names)
        known = self._feature_sets.get(key)
        if known is None:
            with self.engine.begin() as connection:
                known = self._feature_sets[key] = feature_set_id(connection, names)
        return known

    def insert_rows(self, rows: list[Row]) -> None:
        """Insert rows (columns as INSERT_COLUMNS) in one transaction; raises SQLAlchemyError like
        any insert (the caller then retries by call)."""
        whole = len(rows) - len(rows) % ROWS_PER_INSERT
        chunks = [rows[i : i + ROWS_PER_INSERT] for i in range(0, whole, ROWS_PER_INSERT)]
        group = INSERTS_PER_PAUSE if self.pause is not None else max(1, len(chunks))
        with self.engine.begin() as connection:
            for first in range(0, len(chunks), group):
                if first:
                    self._pause()
                self._many.run(connection, chunks[first : first + group])
            if whole < len(rows):
                if chunks:
                    self._pause()
                self._one.run(connection, [[row] for row in rows[whole:]])

    def _pause(self) -> None:
        if self.pause is not None:
            self.pause()

    def write(self, calls: list[Call]) -> WriteResult:
        result = WriteResult()
        converted: list[tuple[int, list[Row]]] = []
        for call in calls:
            try:
                converted.append((len(call[1]), call_rows(call, self.feature_set(call[3]))))
            except Exception as exc:  # noqa: BLE001 - a bad call must not cost the others
                result.add(self.failed(len(call[1]), exc))
        if not converted:
            return result
        try:
            self.insert_rows([row for _, rows in converted for row in rows])
            result.written += sum(n for n, _ in converted)
            return result
        except SQLAlchemyError as exc:
            if len(converted) == 1:
                result.add(self.failed(converted[0][0], exc))
                return result
            logger.warning(
                "prediction log: batch insert failed (%s); retrying call by call",
                type(exc).__name__,
            )
        for n, rows in converted:
            try:
                self.insert_rows(rows)
                result.written += n
            except SQLAlchemyError as exc:
                result.add(self.failed(n, exc))
        return result

    def failed(self, rows: int, exc: BaseException) -> WriteResult:
        # The first failure gets a traceback; a database that stays down must not flood the log:
        # after it, one line per ERROR_LOG_INTERVAL_S with the count since. SQLAlchemy's message
        # quotes the bound rows, so only its first line is kept.
        self._failures_since_log += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL_S:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.error(
                "prediction log: %d failed write(s), the last of %d row(s): %s",
                self._failures_since_log,
                rows,
                message,
                exc_info=self._last_error_log == -ERROR_LOG_INTERVAL_S,
            )
            self._last_error_log = now
            self._failures_since_log = 0
        return WriteResult(errors=1, lost=rows)
