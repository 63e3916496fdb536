"""Reading the prediction log, and storing feedback labels against it: no writer, no threads.

Used by the service for /feedback and the live-error gauges, and by the offline tools (export,
drift report). Opening one starts nothing: the write path is :mod:`service.prediction_log.shipper`.
A label sent right after its prediction needs the shipper flushed first (the service does that).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from service.prediction_log.tables import (
    PredictionLogError,
    check_layout,
    create_log_engine,
    feature_set_names,
    feedback,
    predictions,
    redact,
    sqlite_path,
)

# Columns labelled_rows adds next to the features.
META_COLUMNS = ["prediction", "actual", "model_version", "created_at", "prediction_id"]
# Bound parameters per IN (...) clause: SQLite's default limit is 999 on old builds.
_IN_CHUNK = 500


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


def _window(since: float | None, until: float | None) -> list[ColumnElement[bool]]:
    """Half-open window [since, until) on prediction time, so consecutive windows never overlap."""
    clauses: list[ColumnElement[bool]] = []
    if since is not None:
        clauses.append(predictions.c.created_at >= since)
    if until is not None:
        clauses.append(predictions.c.created_at < until)
    return clauses


def _features_frame(connection: Connection, rows: list[tuple[int, str]]) -> pd.DataFrame:
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


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LogReader:
    """Feedback, labelled rows and recent inputs of one prediction log database."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        """``engine``: share the shipper's (an in-memory SQLite database exists in it alone)."""
        self.url = url
        self._owns_engine = engine is None
        self.engine: Engine = engine if engine is not None else create_log_engine(url)

    @classmethod
    def open_existing(cls, url: str) -> LogReader:
        """A reader of a database the service has already written, for the offline tools.

        A missing SQLite file is reported rather than created: a typo in ``--db`` would otherwise
        produce an empty log and a misleading "0 rows".
        """
        path = sqlite_path(url)
        if path is not None and not path.is_file():
            raise PredictionLogError(f"prediction log database {path} does not exist")
        reader = cls(url)
        try:
            has_table = inspect(reader.engine).has_table(predictions.name)
            if not has_table:
                raise PredictionLogError(
                    f"{redact(url)} has no predictions table (not a prediction log)"
                )
            check_layout(reader.engine, url)
        except SQLAlchemyError as exc:
            reader.close()
            raise PredictionLogError(f"cannot open prediction log {redact(url)}: {exc}") from None
        except PredictionLogError:
            reader.close()
            raise
        return reader

    def close(self) -> None:
        """Release the connections of an engine this reader made (a shared one is its owner's)."""
        if self._owns_engine:
            self.engine.dispose()

    # ---------------------------------------------------------------------------- feedback

    def record_feedback(
        self, items: Sequence[tuple[str, Any]], received_at: float
    ) -> FeedbackResult:
        """Store labels for known predictions; every id is reported in one of four lists.

        The policy: a prediction's first label is its label. A later one with the same value is
        reported ``unchanged``; one with another value is refused and reported as a conflict
        (never a silent overwrite: whoever labels second cannot change what the next model learns).
        Within ``items`` the same holds in order. Unknown ids are reported, never dropped silently.
        """
        if not items:
            return FeedbackResult()
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
        with self.engine.begin() as connection:
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
        with self.engine.connect() as connection:
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
        with self.engine.connect() as connection:
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
