"""The log's batch insert: statements of many rows, pauses between them, one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.prediction_log.inserts import INSERTS_PER_PAUSE, ROWS_PER_INSERT, BatchWriter, Row
from service.prediction_log.tables import create_log_engine, metadata


def rows(count: int, feature_set: int) -> list[Row]:
    return [(f"id-{i:05d}", 1.0 + i, "3", feature_set, f"[{i}]", f"{i / 2}") for i in range(count)]


def test_a_large_insert_pauses_between_statements_in_one_transaction(tmp_path: Path) -> None:
    database = tmp_path / "log.db"
    engine = create_log_engine(f"sqlite:///{database}")
    metadata.create_all(engine)
    pauses: list[int] = []

    def pause() -> None:
        with sqlite3.connect(database) as reader:  # what another process sees meanwhile
            pauses.append(reader.execute("SELECT count(*) FROM predictions").fetchone()[0])

    writer = BatchWriter(engine, pause=pause)
    count = 5 * ROWS_PER_INSERT * INSERTS_PER_PAUSE + 57  # five groups, then 57 single rows
    writer.insert_rows(rows(count, writer.feature_set(["x"])))
    assert pauses == [0] * 5, "a pause after each group, none after the last statement"
    with sqlite3.connect(database) as reader:
        assert reader.execute("SELECT count(*), max(id) FROM predictions").fetchone() == (
            count, f"id-{count - 1:05d}",
        )  # fmt: skip
    engine.dispose()


def test_a_failure_after_a_pause_writes_nothing(tmp_path: Path) -> None:
    engine = create_log_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    calls = 0

    def failing_pause() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("stopped in the middle")

    writer = BatchWriter(engine, pause=failing_pause)
    with pytest.raises(RuntimeError):
        writer.insert_rows(rows(3 * ROWS_PER_INSERT * INSERTS_PER_PAUSE, writer.feature_set(["x"])))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM predictions").scalar() == 0
    engine.dispose()
