"""The prediction log's tables and the one function that writes predictions into them.

Kept apart from :mod:`service.prediction_log` because the writer process imports only this: no
pandas, no Typer, no mloop, so it starts in well under a second.

Predictions and labels are stored as JSON text so one table holds regression values and class labels
alike, and values round-trip exactly. SQLite is the default (WAL, so the CLI tools read while the
service writes; busy_timeout, so several writer processes wait for each other instead of failing;
synchronous=NORMAL, durable across application crashes, at most the last commits lost on power
loss). Any other SQLAlchemy URL works: only SQLAlchemy Core and portable types are used.
"""

from __future__ import annotations

import logging
import time
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
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Engine
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
    if not all(type(prediction_id) is str for prediction_id in ids):
        return "malformed record call: prediction ids must be strings"
    return None


def call_rows(call: Call) -> list[dict[str, Any]]:
    """Rows of one call, JSON-encoded with orjson: the stdlib encoder costs ~5x more per row
    (orjson also writes the shortest repr that reads back to the same float)."""
    problem = malformed(call)
    if problem is not None:
        raise ValueError(problem)
    model_version, ids, features, names, outputs, created_at = call
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


class BatchWriter:
    """Writes calls in one transaction; a failed batch is retried call by call, so one bad call
    (e.g. a duplicate prediction id) does not take the rest of its batch with it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._last_error_log = -ERROR_LOG_INTERVAL_S
        self._failures_since_log = 0
        # The insert compiled once for this database's parameter style, run through the driver's
        # executemany: SQLAlchemy's per-row parameter processing cost more than SQLite's insert.
        compiled = predictions.insert().compile(dialect=engine.dialect)
        self._insert_sql = str(compiled)
        self._positional = bool(engine.dialect.positional)
        self._order = [str(name) for name in (compiled.positiontup or [])]

    def insert_rows(self, rows: list[tuple[str, float, str, str, str]]) -> None:
        """Insert (id, created_at, model_version, features JSON, prediction JSON) tuples in one
        transaction; raises SQLAlchemyError like any insert (the caller then retries by call)."""
        columns = ["id", "created_at", "model_version", "features", "prediction"]
        if self._positional and self._order != columns:
            index = [columns.index(name) for name in self._order]
            rows = [tuple(row[i] for i in index) for row in rows]  # type: ignore[misc]
        params: Any = rows if self._positional else [dict(zip(columns, row)) for row in rows]
        with self.engine.begin() as connection:
            connection.exec_driver_sql(self._insert_sql, params)

    def write(self, calls: list[Call]) -> WriteResult:
        result = WriteResult()
        converted: list[tuple[int, list[dict[str, Any]]]] = []
        for call in calls:
            try:
                converted.append((len(call[1]), call_rows(call)))
            except Exception as exc:  # noqa: BLE001 - a bad call must not cost the others
                result.add(self.failed(len(call[1]), exc))
        if not converted:
            return result
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    predictions.insert(), [row for _, rows in converted for row in rows]
                )
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
                with self.engine.begin() as connection:
                    connection.execute(predictions.insert(), rows)
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
