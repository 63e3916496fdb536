"""Predictions into rows, and rows into the database: what the writer process does per shipment.

A shipment (:class:`~service.prediction_log.wire.Packed`) becomes rows column by column and is
inserted in one transaction; if that fails (a duplicate id), call by call, so one bad call does not
take the rest with it. No pandas, no Typer, no mloop: the writer process imports this.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from service.prediction_log.tables import feature_sets, predictions
from service.prediction_log.wire import Packed

logger = logging.getLogger("service.prediction_log")

ERROR_LOG_INTERVAL_S = 60.0
# One call, as the request handler made it: (model version, prediction ids, features in the
# model's order, feature names, outputs, epoch seconds).
Call = tuple[str, list[str], npt.NDArray[np.float64], list[str], npt.NDArray[Any], float]
INSERT_COLUMNS = ("id", "created_at", "model_version", "feature_set", "features", "prediction")
Row = tuple[str, float, str, int, str, str]
ROWS_PER_INSERT = 100  # 600 bound values: under SQLite's oldest limit of 999 per statement
INSERTS_PER_PAUSE = 2  # ~0.4 ms of inserting on one core between two pauses


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
        its core there, see :mod:`service.prediction_log.writer`)."""
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


def json_rows(matrix: npt.NDArray[Any]) -> list[str]:
    """Each row of a 2-d array as a JSON array, the same text ``orjson.dumps(row)`` writes.

    One orjson call for the whole matrix, split at the row boundaries: ~0.3 us per row against
    ~0.65 us for one call per row (measured, 11 columns). Numbers contain no brackets, so the
    boundaries are exactly the ``],[`` between rows.
    """
    if len(matrix) == 0:
        return []
    text = orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return text[1:-1].replace("],[", "]\n[").split("\n")


def json_values(values: npt.NDArray[Any]) -> list[str]:
    """Each element of a 1-d array as a JSON value (numbers in one orjson call, split at the
    commas; other dtypes, e.g. text class labels, one call each)."""
    if len(values) == 0:
        return []
    if values.dtype.kind in "biuf":
        return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")
    return [_json_value(value) for value in values.tolist()]


def _json_value(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # a lone surrogate, which orjson (strict UTF-8) refuses; json escapes it
        return json.dumps(value)


def packed_rows(packed: Packed, feature_set: int) -> list[Row]:
    """All rows of a message, built column by column (a few list comprehensions for the whole
    batch instead of one pass per call: single-row calls made per-call work dominate)."""
    features = json_rows(packed.features)
    outputs = json_values(packed.outputs)
    created = np.repeat(packed.created_at, packed.counts).tolist()
    sets = itertools.repeat(feature_set, packed.rows)
    return list(zip(packed.ids(), created, packed.row_versions(), sets, features, outputs))


def write_packed(writer: BatchWriter, packed: Packed) -> WriteResult:
    """One transaction for the whole message; if it fails (e.g. a duplicate id), call by call."""
    try:
        writer.insert_rows(packed_rows(packed, writer.feature_set(packed.names)))
        return WriteResult(written=packed.rows)
    except SQLAlchemyError as exc:
        logger.warning("batch insert failed (%s); retrying call by call", type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - e.g. an output orjson cannot encode
        logger.warning("batch conversion failed (%s); retrying call by call", exc)
    return writer.write(packed.unpack())
