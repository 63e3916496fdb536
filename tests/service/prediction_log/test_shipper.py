"""service.prediction_log, the log's write path with the real writer process: queueing, shipping, restarts, SCHED_IDLE, SQLite settings."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from mloop.config import DatasetSchema
from service.prediction_log.reader import LogReader
from service.prediction_log.tables import SQLITE_PAGE_BYTES, PredictionLogError
from tests.helpers.net import wait_until
from tests.helpers.paths import REPO
from tests.helpers.prediction_log import T0, RecordingLog, record_rows, stored_ids


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
