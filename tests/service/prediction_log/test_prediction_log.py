"""service.prediction_log (shipper, writer process, reader, export): real SQLite files, the real writer process, the pipeline's real ingest."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from mloop import bundle as mloop_bundle
from mloop.config import DatasetSchema
from mloop.ingest import read_extra_rows
from mloop.validate import check
from service.prediction_log import export as export_module
from service.prediction_log.export import export_labelled, parse_time
from service.prediction_log.reader import FeedbackResult, LogReader
from service.prediction_log.tables import SQLITE_PAGE_BYTES, PredictionLogError
from tests.helpers.net import wait_until
from tests.helpers.paths import DIABETES_SCHEMA, REPO
from tests.helpers.prediction_log import RecordingLog

T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z


@pytest.fixture
def plog_db(tmp_path: Path) -> Path:
    return tmp_path / "log" / "predictions.db"


@pytest.fixture
def plog_log(plog_db: Path) -> Iterator[RecordingLog]:
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=0.01)
    log.start()
    yield log
    log.close()


def record_rows(
    log: RecordingLog,
    frame: pd.DataFrame,
    features: list[str],
    prefix: str,
    created_at: float = T0,
    version: str = "1",
) -> list[str]:
    ids = [f"{prefix}{i:04d}" for i in range(len(frame))]
    outputs = frame["target"].to_numpy(dtype=float) + 0.5
    assert log.record(
        version, ids, frame[features].to_numpy(dtype=float), features, outputs, created_at
    )
    return ids


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM predictions ORDER BY id")]


def test_records_survive_a_restart(
    plog_db: Path, diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema
) -> None:
    features = diabetes_schema.features
    first = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=0.01)
    first.start()
    # Concatenated, not extended in place: record() queues the caller's list without copying it.
    ids = record_rows(first, diabetes_frame.iloc[:5], features, "a-", version="3") + record_rows(
        first, diabetes_frame.iloc[5:8], features, "b-", created_at=T0 + 1, version="3"
    )
    assert first.close()  # close writes what is queued: no flush() needed
    assert first.written_rows == 8 and first.queue_depth() == 0

    assert stored_ids(plog_db) == sorted(ids)
    second = RecordingLog(f"sqlite:///{plog_db}")
    second.start()
    try:
        logged = second.recent_features()
        assert list(logged.columns) == features
        np.testing.assert_array_equal(
            logged.to_numpy(), diabetes_frame[features].iloc[:8].to_numpy()
        )
        result = second.record_feedback([(ids[0], 151.0)], received_at=T0 + 60)
        assert (result.accepted, result.unknown) == ([ids[0]], [])
        labelled = second.labelled_rows()
        assert labelled[["prediction_id", "model_version", "created_at"]].values.tolist() == [
            [ids[0], "3", T0]
        ]
        assert labelled["prediction"].iloc[0] == diabetes_frame["target"].iloc[0] + 0.5
        assert labelled["actual"].iloc[0] == 151.0
    finally:
        second.close()


def test_full_queue_drops_the_whole_call_without_blocking(plog_db: Path) -> None:
    # No writer thread: nothing ever drains the queue, so a blocking put would hang this test.
    log = RecordingLog(f"sqlite:///{plog_db}", queue_size=2)
    names = ["x1", "x2"]
    one_row = np.zeros((1, 2))
    assert log.record("1", ["p1"], one_row, names, np.array([1.0]), T0)
    assert log.record("1", ["p2"], one_row, names, np.array([2.0]), T0)
    assert not log.record("1", ["p3", "p4", "p5"], np.zeros((3, 2)), names, np.zeros(3), T0)
    assert not log.record("1", ["p6"], one_row, names, np.array([6.0]), T0)
    assert log.dropped_rows == 4
    assert log.queue_depth() == 2
    assert not log.flush(timeout=30), "without a writer, flush reports pending rows at once"

    log.start()
    try:
        assert log.flush()
        assert log.written_rows == 2 and log.queue_depth() == 0
        assert stored_ids(plog_db) == ["p1", "p2"]
    finally:
        log.close()
    assert not log.record("1", ["late"], one_row, names, np.array([0.0]), T0)
    assert log.dropped_rows == 5, "a closed log drops (and counts) instead of queueing forever"


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


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trips_into_the_ingest_stage(
    suffix: str,
    tmp_path: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    features, target = diabetes_schema.features, diabetes_schema.target
    rows = diabetes_frame.iloc[:40]
    ids = record_rows(plog_log, rows, features, "e")
    record_rows(plog_log, diabetes_frame.iloc[40:50], features, "unlabelled-")
    labels = rows[target].tolist()
    assert plog_log.record_feedback(list(zip(ids, labels)), T0 + 1).accepted == ids

    feedback_dir = tmp_path / "data" / "feedback"
    out = feedback_dir / f"export-20240601T120000{suffix}"
    quarantine = tmp_path / "data" / "quarantine"
    result = export_labelled(plog_log, out, diabetes_schema, quarantine_dir=quarantine)
    assert (result.exported, result.quarantined) == (40, 0)
    assert not quarantine.exists(), "nothing to quarantine: no file"
    assert [p.name for p in feedback_dir.iterdir()] == [out.name], "no temp file left behind"

    frame, used = read_extra_rows(feedback_dir, list(diabetes_schema.columns))
    assert used == [str(out)]
    typed, violations = check(frame, diabetes_schema)
    assert violations == []
    expected = rows[list(diabetes_schema.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        typed.reset_index(drop=True), expected, check_exact=suffix != ".csv"
    )

    empty = export_labelled(plog_log, tmp_path / "none.parquet", diabetes_schema, since=T0 + 10)
    assert empty.exported == 0 and not (tmp_path / "none.parquet").exists()


def test_export_quarantines_rows_that_violate_the_schema(
    tmp_path: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    # Labels stored by an older service (or features logged under the "flag" policy): one bad
    # row must not stop the retrain at validate, and must not vanish unreported either.
    features, target = diabetes_schema.features, diabetes_schema.target
    rows = diabetes_frame.iloc[:6]
    ids = record_rows(plog_log, rows, features, "q")
    labels: list[object] = rows[target].tolist()
    labels[1] = 5000.0  # out of the target's range [0, 400]
    labels[4] = "high"  # not a number
    assert plog_log.record_feedback(list(zip(ids, labels)), T0 + 1).accepted == ids
    feedback_dir, quarantine = tmp_path / "data" / "feedback", tmp_path / "data" / "quarantine"
    out = feedback_dir / "export.parquet"

    result = export_labelled(plog_log, out, diabetes_schema, quarantine_dir=quarantine)

    assert (result.exported, result.quarantined) == (4, 2)
    frame, _ = read_extra_rows(feedback_dir, list(diabetes_schema.columns))
    assert check(frame, diabetes_schema)[1] == [], "only valid rows reach ingest"
    assert len(frame) == 4
    rejected = pd.read_csv(quarantine / "export.rejected.csv")
    assert rejected["prediction_id"].tolist() == [ids[1], ids[4]]
    report = orjson.loads((quarantine / "export.report.json").read_bytes())
    assert report["quarantined"] == 2 and report["exported"] == 4
    reasons = {(v["column"], v["rule"]) for v in report["violations"]}
    assert ("target", "not a number") in reasons
    assert any(column == "target" and "less_than_or_equal_to" in rule for column, rule in reasons)


def test_export_casts_integer_columns_per_schema(plog_log: RecordingLog, tmp_path: Path) -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "counts",
            "task": "classification",
            "source": {"kind": "path", "path": "x.csv"},
            "target": "label",
            "columns": {
                "rooms": {"dtype": "int"},
                "area": {"dtype": "float"},
                "label": {"dtype": "int"},
            },
        }
    )
    features = np.array([[3.0, 70.5], [1.0, 20.0]])
    assert plog_log.record("1", ["i1", "i2"], features, ["rooms", "area"], np.array([1, 0]), T0)
    plog_log.record_feedback([("i1", 1), ("i2", 0.0)], T0)
    assert export_labelled(plog_log, tmp_path / "rows.csv", schema).exported == 2
    frame = pd.read_csv(tmp_path / "rows.csv")
    assert list(frame.columns) == ["rooms", "area", "label"]
    assert frame.dtypes.astype(str).tolist() == ["int64", "float64", "int64"]
    assert frame.values.tolist() == [[3, 70.5, 1], [1, 20.0, 0]]


def test_sqlite_runs_in_wal_mode_with_large_pages(plog_log: RecordingLog, plog_db: Path) -> None:
    with sqlite3.connect(plog_db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_BYTES
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(predictions)")}
    assert "ix_predictions_created_at" in indexes
    with plog_log.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_writer_survives_database_errors(plog_db: Path) -> None:
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=0.01)
    names, row = ["x"], np.ones((1, 1))
    # Queued before the writer starts, so all four land in one batch: the duplicate id fails the
    # batch insert, the call-by-call retry keeps the good calls.
    assert log.record("1", ["dup"], row, names, np.array([1.0]), T0)
    assert log.record("1", ["dup"], row, names, np.array([2.0]), T0)
    with pytest.raises(ValueError, match="malformed"):  # shapes disagree: refused at once
        log.record("1", ["bad"], np.ones((1, 3)), names, np.array([3.0]), T0)
    assert log.record("1", ["ok"], row, names, np.array([4.0]), T0)
    log.start()
    try:
        assert log.flush()
        assert log.write_errors == 1 and log.lost_rows == 1
        assert log.written_rows == 2
        assert log.running, "the writer thread is still alive"
        assert log.record("1", ["after"], row, names, np.array([5.0]), T0)
        assert log.flush()
        assert log.written_rows == 3
    finally:
        log.close()
    assert stored_ids(plog_db) == ["after", "dup", "ok"]


def test_rows_are_written_by_a_separate_background_process(plog_log: RecordingLog) -> None:
    # The serving process only packs calls; the per-row work runs in another process, which
    # gives the core to requests at once while it keeps up (SCHED_IDLE).
    writer = plog_log.process
    assert writer is not None and writer.pid != os.getpid() and writer.is_alive()
    names, row = ["x1", "x2"], np.array([[0.25, 1e-300]])
    for index in range(50):
        assert plog_log.record("1", [f"p{index:02d}"], row, names, np.array([index / 3]), T0)
    assert plog_log.flush()
    assert plog_log.written_rows == 50 and plog_log.queue_depth() == 0
    if hasattr(os, "SCHED_IDLE"):
        wait_until(lambda: os.sched_getscheduler(writer.pid) == os.SCHED_IDLE, timeout=5)
        assert os.sched_getscheduler(writer.pid) == os.SCHED_IDLE
    rows = plog_log.labelled_rows()
    assert rows.empty, "no feedback yet: nothing is labelled"
    with sqlite3.connect(plog_log.url.removeprefix("sqlite:///")) as connection:
        stored = connection.execute(
            "SELECT s.names, p.features, p.prediction FROM predictions p "
            "JOIN feature_sets s ON s.id = p.feature_set WHERE p.id = 'p07'"
        ).fetchone()
        (sets,) = connection.execute("SELECT COUNT(*) FROM feature_sets").fetchone()
    assert stored == ('["x1","x2"]', "[0.25,1e-300]", repr(7 / 3)), "values round-trip exactly"
    assert sets == 1, "the feature names are stored once, not per row"


def test_one_shipment_keeps_every_call_apart(plog_db: Path) -> None:
    # Calls travel to the writer as flat buffers (ids concatenated, versions as runs): singles and
    # batches, ids of any length (not only ASCII), two model versions, each call its own time.
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=60)  # nothing ships before flush
    log.start()
    names = ["x1", "x2"]
    calls = [
        ("3", ["a"], [[1.0, 2.0]], T0),
        ("3", ["batch-0", "batch-1", "batch-22"], [[3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], T0 + 1),
        ("4", ["é-ü-ids"], [[9.0, 10.0]], T0 + 2),
        ("3", ["z" * 120], [[11.0, 12.0]], T0 + 3),
    ]
    try:
        for version, ids, rows, created in calls:
            outputs = np.array([row[0] * 10 for row in rows])
            assert log.record(version, ids, np.array(rows), names, outputs, created)
        with pytest.raises(ValueError, match="strings"):  # a non-text id is refused alone
            log.record("3", [7], np.array([[0.0, 0.0]]), names, np.array([0.0]), T0)  # type: ignore[list-item]
        assert log.flush() and log.written_rows == 6
    finally:
        log.close()
    with sqlite3.connect(plog_db) as connection:
        stored = connection.execute(
            "SELECT p.id, p.model_version, p.created_at, s.names, p.features, p.prediction "
            "FROM predictions p JOIN feature_sets s ON s.id = p.feature_set"
        ).fetchall()
    expected = [
        (prediction_id, version, created, orjson.dumps(names).decode(), orjson.dumps(row).decode(),
         repr(row[0] * 10))
        for version, ids, rows, created in calls
        for prediction_id, row in zip(ids, rows)
    ]  # fmt: skip
    assert sorted(stored) == sorted(expected)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the check as an unprivileged user",
)
def test_the_writer_only_goes_idle_class_when_it_can_come_back() -> None:
    # An unprivileged process cannot leave SCHED_IDLE; such a writer would starve under load.
    check = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from service.prediction_log.writer import can_raise_priority; print(can_raise_priority(10))"
    )
    as_root = subprocess.run(
        [sys.executable, "-c", check, str(REPO)], capture_output=True, text=True, check=True
    )
    assert as_root.stdout.strip() == "True"
    unprivileged = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
        + [sys.executable, "-c", check, str(REPO)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert unprivileged.stdout.strip() == "False", unprivileged.stderr


def test_a_dead_writer_process_is_reported_then_restarted(plog_db: Path) -> None:
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=0.01)
    log.start()
    try:
        names, row = ["x"], np.ones((1, 1))
        assert log.record("1", ["before"], row, names, np.array([1.0]), T0)
        assert log.flush() and log.written_rows == 1
        first = log.process
        assert first is not None and first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        first.join(5)
        wait_until(lambda: not log.running, timeout=5, interval=0.01)
        assert not log.running, "a killed writer is noticed"
        assert not log.record("1", ["while-down"], row, names, np.array([2.0]), T0)
        assert log.dropped_rows == 1 and log.queue_depth() == 0
        wait_until(lambda: log.running, timeout=10)
        assert log.running and log.writer_restarts == 1, "a new writer replaces the dead one"
        assert log.process is not first
        assert log.record("1", ["after"], row, names, np.array([3.0]), T0)
        assert log.flush() and log.written_rows == 2
    finally:
        log.close(timeout=5)
    assert stored_ids(plog_db) == ["after", "before"]


def test_a_shipment_lost_with_its_writer_is_counted_once(plog_db: Path) -> None:
    # A stopped writer reads nothing, so a shipment bigger than the pipe's buffer blocks the
    # shipper in send(). Killing the writer then ends that send with a broken pipe while the
    # receiver sees the pipe close: both sides notice the same rows, and they are lost once.
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=0.01)
    log.start()
    try:
        assert log.process is not None and log.process.pid is not None
        os.kill(log.process.pid, signal.SIGSTOP)
        rows = 40_000  # 3.5 MB of features: far beyond a pipe's 64 KB buffer
        features = np.random.default_rng(5).normal(size=(rows, 11))
        ids = [f"k{i:06d}" for i in range(rows)]
        assert log.record("1", ids, features, [f"x{i}" for i in range(11)], features[:, 0], T0)
        time.sleep(0.3)  # the shipper has taken the rows and is blocked in send()
        os.kill(log.process.pid, signal.SIGKILL)
        log.process.join(5)
        wait_until(lambda: not log.running and log.lost_rows >= rows, timeout=5, interval=0.01)
        time.sleep(0.2)  # room for a second, wrong count to arrive
        assert not log.running
        assert log.lost_rows == rows and log.written_rows == 0
        assert log.queue_depth() == 0
    finally:
        log.close(timeout=2)
    assert log.queue_depth() == 0 and log.lost_rows == rows


def test_in_memory_sqlite_is_written_in_process(tmp_path: Path) -> None:
    # An in-memory database exists only inside this process: a writer process could not see it.
    log = RecordingLog("sqlite://", flush_interval_s=0.01)
    log.start()
    try:
        assert log.process is None
        names = ["x"]
        assert log.record("1", ["m1", "m2"], np.ones((2, 1)), names, np.array([1.0, 2.0]), T0)
        assert log.flush() and log.written_rows == 2
        result = log.record_feedback([("m1", 1.5), ("nope", 0.0)], T0 + 1)
        assert result.accepted == ["m1"] and result.unknown == ["nope"]
    finally:
        assert log.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.prediction_log", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def schema_only_bundle(tmp_path: Path) -> Path:
    """What the export reads of a champion bundle: its schema (the diabetes one)."""
    bundle = tmp_path / "champion"
    bundle.mkdir()
    (bundle / "schema.yaml").write_text(
        DIABETES_SCHEMA.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return bundle


def test_export_cli(
    tmp_path: Path,
    plog_db: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    bundle = schema_only_bundle(tmp_path)
    ids = record_rows(
        plog_log, diabetes_frame.iloc[:6], diabetes_schema.features, "cli-"
    ) + record_rows(
        plog_log, diabetes_frame.iloc[6:10], diabetes_schema.features, "late-", T0 + 86400
    )
    plog_log.record_feedback([(i, 100.0) for i in ids], T0 + 90000)
    out = tmp_path / "feedback" / "export.parquet"
    db = f"sqlite:///{plog_db}"

    done = run_cli(
        "export", "--db", db, "--bundle", str(bundle), "--out", str(out), "--until", "2024-06-02"
    )
    assert done.returncode == 0, done.stderr
    assert "exported 6 labelled row(s)" in done.stdout
    assert len(pd.read_parquet(out)) == 6

    missing_db = run_cli(
        "export", "--db", f"sqlite:///{tmp_path / 'absent.db'}", "--bundle", str(bundle)
    )
    assert missing_db.returncode == 1
    assert "absent.db does not exist" in missing_db.stderr
    assert not (tmp_path / "absent.db").exists(), "a typo in --db must not create a database"

    missing_bundle = run_cli(
        "export", "--db", db, "--bundle", str(tmp_path / "nope"), "--out", str(out)
    )
    assert missing_bundle.returncode == 1
    assert "bundle directory" in missing_bundle.stderr and "does not exist" in missing_bundle.stderr


def test_bundle_file_names_match_mloop() -> None:
    for name in ("SCHEMA_FILE", "REFERENCE_FILE", "META_FILE"):
        assert getattr(export_module, name) == getattr(mloop_bundle, name)


def test_large_shipments_are_inserted_many_rows_per_statement(plog_db: Path) -> None:
    # 257 rows: two statements of 100 rows and 57 single-row inserts, in one transaction.
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=60)
    log.start()
    names = ["a", "b", "c"]
    rng = np.random.default_rng(7)
    features = rng.normal(size=(257, 3))
    outputs = rng.normal(size=257)
    ids = [f"big-{i:03d}" for i in range(257)]
    try:
        for start, stop in ((0, 1), (1, 150), (150, 151), (151, 257)):
            assert log.record("2", ids[start:stop], features[start:stop], names,
                              outputs[start:stop], T0 + start)  # fmt: skip
        assert log.flush() and log.written_rows == 257 and log.write_errors == 0
        logged = log.recent_features()
    finally:
        log.close()
    np.testing.assert_array_equal(logged[names].to_numpy(), features)  # exact, in time order
    with sqlite3.connect(plog_db) as connection:
        stored = connection.execute("SELECT id, prediction FROM predictions ORDER BY id").fetchall()
    assert stored == [(i, repr(float(o))) for i, o in zip(ids, outputs)]


def test_a_log_shared_by_two_feature_sets_reads_back_their_union(plog_log: RecordingLog) -> None:
    assert plog_log.record("1", ["w1"], np.array([[1.0, 2.0]]), ["x", "y"], np.array([0.5]), T0)
    assert plog_log.record("9", ["d1"], np.array([[3.0]]), ["z"], np.array([1.5]), T0 + 1)
    assert plog_log.record("1", ["w2"], np.array([[4.0, 5.0]]), ["x", "y"], np.array([2.5]), T0 + 2)
    assert plog_log.flush()
    frame = plog_log.recent_features()
    assert list(frame.columns) == ["x", "y", "z"]
    expected = [[1.0, 2.0, np.nan], [np.nan, np.nan, 3.0], [4.0, 5.0, np.nan]]
    np.testing.assert_array_equal(frame.to_numpy(), np.array(expected))


def test_a_log_of_the_older_layout_is_refused_and_left_alone(plog_db: Path) -> None:
    plog_db.parent.mkdir(parents=True)
    with sqlite3.connect(plog_db) as connection:
        connection.execute(
            "CREATE TABLE predictions (id TEXT PRIMARY KEY, created_at FLOAT NOT NULL, "
            "model_version TEXT NOT NULL, features TEXT NOT NULL, prediction TEXT NOT NULL)"
        )
        connection.execute("INSERT INTO predictions VALUES ('old', 1.0, '1', '{\"x\":1}', '2')")
    before = plog_db.read_bytes()
    log = RecordingLog(f"sqlite:///{plog_db}")
    with pytest.raises(PredictionLogError, match="older table layout.*feature_set"):
        log.start()
    log.close()
    with pytest.raises(PredictionLogError, match="older table layout"):
        LogReader.open_existing(f"sqlite:///{plog_db}")
    with sqlite3.connect(plog_db) as connection:
        assert connection.execute("SELECT * FROM predictions").fetchall() == [
            ("old", 1.0, "1", '{"x":1}', "2")
        ]
    assert plog_db.read_bytes() == before


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


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_writer_starved_by_a_busy_core_is_raised_and_catches_up(plog_db: Path) -> None:
    # The writer and a busy process share one CPU. An idle-class writer gets nothing there; a
    # shipment bigger than the pipe's buffer then blocks the shipper in send(), so only the
    # receiver's watch can raise the writer. Without it, nothing is written until the hog ends.
    cpu = min(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    hog = subprocess.Popen(
        [sys.executable, "-c", "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\n"
         "while True: pass", str(cpu)]
    )  # fmt: skip
    os.sched_setaffinity(0, {cpu})  # the writer process inherits it
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=0.05)
    try:
        log.start()
        os.sched_setaffinity(0, saved)
        rows = 60_000  # 5 MB of features: far beyond a pipe's 64 KB buffer
        features = np.random.default_rng(3).normal(size=(rows, 11))
        ids = [f"s{i:06d}" for i in range(rows)]
        assert log.record("1", ids, features, [f"x{i}" for i in range(11)], features[:, 0], T0)
        wait_until(lambda: log.written_rows >= rows, timeout=30, interval=0.1)
        assert log.written_rows == rows and log.dropped_rows == 0
    finally:
        os.sched_setaffinity(0, saved)
        hog.kill()
        hog.wait()
        log.close()


def test_export_cli_hands_only_valid_rows_to_ingest(
    tmp_path: Path,
    plog_db: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    """The audit's case: one out-of-range label in the log made every later `dvc repro` stop."""
    bundle = schema_only_bundle(tmp_path)
    ids = record_rows(plog_log, diabetes_frame.iloc[:5], diabetes_schema.features, "v-")
    plog_log.record_feedback([(i, 500.0 if n == 2 else 100.0) for n, i in enumerate(ids)], T0)
    feedback_dir, quarantine = tmp_path / "data" / "feedback", tmp_path / "data" / "quarantine"
    done = run_cli(
        "export", "--db", f"sqlite:///{plog_db}", "--bundle", str(bundle),
        "--out", str(feedback_dir / "export.csv"), "--quarantine-dir", str(quarantine),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame, _ = read_extra_rows(feedback_dir, list(diabetes_schema.columns))
    assert len(frame) == 4 and check(frame, diabetes_schema)[1] == []
    assert "quarantined 1 row(s)" in done.stderr
    assert pd.read_csv(quarantine / "export.rejected.csv")["prediction_id"].tolist() == [ids[2]]


def test_export_writes_a_category_as_its_text(plog_log: RecordingLog, tmp_path: Path) -> None:
    """The log holds a category's code (the model's input); the exported row holds its text, and
    a code outside the list is quarantined, not guessed."""
    schema = DatasetSchema.model_validate(
        {
            "name": "colours",
            "task": "regression",
            "source": {"kind": "path", "path": "x.csv"},
            "target": "price",
            "columns": {
                "colour": {"dtype": "category", "allowed": ["red", "white"], "nullable": True},
                "area": {"dtype": "float"},
                "price": {"dtype": "float"},
            },
        }
    )
    features = np.array([[1.0, 70.5], [np.nan, 20.0], [0.0, 1.0], [7.0, 2.0]])
    ids = ["c1", "c2", "c3", "c4"]
    assert plog_log.record("1", ids, features, ["colour", "area"], np.zeros(4), T0)
    plog_log.record_feedback([(i, 9.5) for i in ids], T0)
    quarantine = tmp_path / "quarantine"
    result = export_labelled(plog_log, tmp_path / "rows.csv", schema, quarantine_dir=quarantine)
    assert (result.exported, result.quarantined) == (3, 1)
    frame = pd.read_csv(tmp_path / "rows.csv")
    assert frame["colour"].tolist()[0::2] == ["white", "red"] and pd.isna(frame["colour"][1])
    assert check(frame, schema)[1] == []
    report = orjson.loads((quarantine / "rows.report.json").read_bytes())
    assert report["violations"][0]["column"] == "colour"
    assert report["violations"][0]["rule"] == "not a category code"
