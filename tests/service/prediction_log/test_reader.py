"""service.prediction_log, reading the log: feedback labels, windows, labelled rows, feature sets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from mloop.config import DatasetSchema
from service.prediction_log.export import parse_time
from service.prediction_log.reader import FeedbackResult
from tests.helpers.prediction_log import T0, RecordingLog, record_rows


def test_feedback_reports_unknown_ids_and_keeps_the_first_label(
    plog_log: RecordingLog, diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
) -> None:
    ids = record_rows(plog_log, diabetes_frame.iloc[:4], diabetes_schema.features, "p")
    # No flush here: record_feedback must see predictions recorded a moment ago.
    result = plog_log.record_feedback(
        [(ids[0], 100.0), ("nope", 1.0), (ids[2], 50), ("nope-2", "x")], received_at=T0 + 5
    )
    assert result.accepted == [ids[0], ids[2]]
    assert result.unknown == ["nope", "nope-2"]
    assert result.conflicts == result.unchanged == []

    # A second label: the same value is "unchanged", another value a conflict; neither writes.
    result = plog_log.record_feedback(
        [(ids[0], 120.5), (ids[2], 50.0), (ids[3], 7.0), (ids[3], 8.0)], received_at=T0 + 9
    )
    assert result.accepted == [ids[3]], "a new id is stored, the first of its labels"
    assert result.unchanged == [ids[2]] and result.conflicts == [ids[0], ids[3]]
    labelled = plog_log.labelled_rows()
    assert labelled["prediction_id"].tolist() == [ids[0], ids[2], ids[3]]
    assert labelled["actual"].tolist() == [100.0, 50, 7.0]
    assert plog_log.record_feedback([], received_at=T0) == FeedbackResult()


def test_windows_are_half_open_on_prediction_time(
    plog_log: RecordingLog, diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
) -> None:
    features = diabetes_schema.features
    for hour in range(3):
        record_rows(
            plog_log, diabetes_frame.iloc[hour : hour + 1], features, f"h{hour}-", T0 + 3600 * hour
        )
    assert plog_log.flush()
    assert len(plog_log.recent_features(since=T0 + 3600, until=T0 + 7200)) == 1
    assert len(plog_log.recent_features(since=T0 + 3600)) == 2
    assert len(plog_log.recent_features(until=T0 + 3600)) == 1
    newest = plog_log.recent_features(limit=2)
    np.testing.assert_array_equal(newest.to_numpy(), diabetes_frame[features].iloc[1:3].to_numpy())
    assert parse_time("2024-06-01T12:00:00") == T0 == parse_time("2024-06-01T14:00:00+02:00")


def test_class_labels_round_trip(plog_log: RecordingLog) -> None:
    outputs = np.array(["yes", "no"], dtype=object)
    assert plog_log.record("2", ["c1", "c2"], np.eye(2), ["a", "b"], outputs, T0)
    assert plog_log.record_feedback([("c1", "no"), ("c2", 1)], T0).accepted == ["c1", "c2"]
    labelled = plog_log.labelled_rows()
    assert labelled["prediction"].tolist() == ["yes", "no"]
    assert labelled["actual"].tolist() == ["no", 1]
    assert labelled[["a", "b"]].to_numpy().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_a_log_shared_by_two_feature_sets_reads_back_their_union(plog_log: RecordingLog) -> None:
    assert plog_log.record("1", ["w1"], np.array([[1.0, 2.0]]), ["x", "y"], np.array([0.5]), T0)
    assert plog_log.record("9", ["d1"], np.array([[3.0]]), ["z"], np.array([1.5]), T0 + 1)
    assert plog_log.record("1", ["w2"], np.array([[4.0, 5.0]]), ["x", "y"], np.array([2.5]), T0 + 2)
    assert plog_log.flush()
    frame = plog_log.recent_features()
    assert list(frame.columns) == ["x", "y", "z"]
    expected = [[1.0, 2.0, np.nan], [np.nan, np.nan, 3.0], [4.0, 5.0, np.nan]]
    np.testing.assert_array_equal(frame.to_numpy(), np.array(expected))


def test_labels_can_be_selected_by_when_they_arrived(plog_log: RecordingLog, plog_db: Path) -> None:
    ids = [f"q{i}" for i in range(3)]
    assert plog_log.record("1", ids, np.zeros((3, 1)), ["x"], np.array([1.0, 2.0, 3.0]), T0)
    plog_log.record_feedback([(ids[0], 1.5)], received_at=T0 + 10)
    plog_log.record_feedback([(ids[1], 2.5), (ids[2], 3.5)], received_at=T0 + 3600)
    late = plog_log.labelled_rows(received_since=T0 + 60)
    assert late["prediction_id"].tolist() == ids[1:] and late["actual"].tolist() == [2.5, 3.5]
    assert len(plog_log.labelled_rows()) == 3
    with sqlite3.connect(plog_db) as connection:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT p.id FROM predictions p JOIN feedback f "
            "ON f.prediction_id = p.id WHERE f.received_at >= 0"
        ).fetchall()
    assert "ix_feedback_received_at" in str(plan), plan  # starts from the labels, not every row
