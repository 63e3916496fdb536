"""The prediction log's tables, its database engine, and creating or checking them.

The writer process imports this (and :mod:`.inserts`): no pandas, no Typer, no mloop, so it starts
in well under a second.

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

import logging
import time
from pathlib import Path
from typing import Any

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
    create_engine,
    event,
    inspect,
    make_url,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

logger = logging.getLogger("service.prediction_log")

SQLITE_BUSY_TIMEOUT_MS = 5000

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


def feature_set_names(connection: Connection) -> dict[int, list[str]]:
    return {
        int(row.id): list(orjson.loads(row.names))
        for row in connection.execute(select(feature_sets.c.id, feature_sets.c.names))
    }


# The log only appends: measured on one core, 64 KB pages cut the writer's insert cost from 2.8 to
# 2.0 us per row against SQLite's default 4 KB (fewer page splits and WAL frames per row), at the
# price of reading a 64 KB page for each feedback id looked up (a few us each).
SQLITE_PAGE_BYTES = 65536


class PredictionLogError(RuntimeError):
    """The prediction log cannot be opened or exported; the message says what to fix."""


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


def create_tables(engine: Engine, url: str) -> None:
    """Create missing tables and switch SQLite to WAL (a persistent property of the file).

    Several service workers start at once on a fresh database: create_all checks, then
    creates, so all but one of them can find the table made in between. A second pass then
    sees it and succeeds, hence the retry.
    """
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    check_layout(engine, url)  # before create_all: a refused log is left as it was
    for attempt in range(3):
        try:
            with engine.begin() as connection:
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
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode = WAL").scalar()
            if str(mode).lower() != "wal":
                logger.warning("%s: SQLite refused WAL mode (journal_mode=%s)", path, mode)
