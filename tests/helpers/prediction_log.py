"""A test-side pairing of the log's write path and its reader, with one call per recorded call.

Production code has no such class: the service hands the call buffer's segments to
:class:`LogShipper` and reads through :class:`LogReader`. Tests record calls with ids of their own
choosing (``segment_of``) and read back on the shipper's engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from service.prediction_log.buffer import segment_of
from service.prediction_log.reader import FeedbackResult, LogReader
from service.prediction_log.shipper import LogShipper

T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z: the tests' prediction time


class RecordingLog(LogShipper):
    """A :class:`LogShipper` that also records single calls and reads like a :class:`LogReader`."""

    def __init__(self, url: str, queue_size: int = 10_000, flush_interval_s: float = 1.0) -> None:
        super().__init__(url, queue_size=queue_size, flush_interval_s=flush_interval_s)
        self.reader = LogReader(url, self.engine)

    @property
    def process(self) -> BaseProcess | None:
        """The writer process running now (None in-process: in-memory SQLite)."""
        return self._writer._process if self._writer is not None else None

    def record(
        self,
        version: str,
        ids: list[str],
        features: npt.NDArray[np.float64],
        names: list[str],
        outputs: npt.NDArray[Any],
        created_at: float,
    ) -> bool:
        """Queue one call (ValueError if its shapes disagree); False when the queue is full."""
        return self.enqueue(segment_of(version, ids, features, names, outputs, created_at))

    def record_feedback(
        self, items: Sequence[tuple[str, Any]], received_at: float
    ) -> FeedbackResult:
        """Flush first, as the service does, so a label right after its prediction finds it."""
        self.flush()
        return self.reader.record_feedback(items, received_at)

    def labelled_rows(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return self.reader.labelled_rows(*args, **kwargs)

    def recent_features(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return self.reader.recent_features(*args, **kwargs)


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
