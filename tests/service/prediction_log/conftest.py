"""Fixtures of the prediction log tests: a log on a real SQLite file, with the real writer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.prediction_log import RecordingLog


@pytest.fixture
def plog_db(tmp_path: Path) -> Path:
    return tmp_path / "log" / "predictions.db"


@pytest.fixture
def plog_log(plog_db: Path) -> Iterator[RecordingLog]:
    log = RecordingLog(f"sqlite:///{plog_db}", flush_interval_s=0.01)
    log.start()
    yield log
    log.close()
