"""The rows each ``/predict`` call leaves behind for the metrics, the drift window and the log.

Why one buffer for three consumers: under load, each Python call on the request path costs about
three times what it costs in a tight loop (measured for the model, the codec and the metrics), so
the request path makes one call under one lock. It copies the call's rows into column buffers, so
no per-call object outlives the request for the cyclic GC to scan (keeping the request's own
arrays and id lists instead was cheaper in a loop and slower under load, measured). Once a second
the housekeeping thread takes the columns and hands the same arrays to all three consumers.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import MutableSequence
from typing import Any

import numpy as np
import numpy.typing as npt

from service.log_writer import Packed

INITIAL_ROWS = 1024  # rows a new column buffer holds; it doubles when a second needs more


class Columns:
    """Calls that share feature names and output dtype, column by column."""

    def __init__(self, names: list[str], width: int, dtype: np.dtype[Any], capacity: int) -> None:
        capacity = max(INITIAL_ROWS, capacity)
        self.names = names
        self.features = np.empty((capacity, width), dtype=np.float64)
        self.outputs = np.empty(capacity, dtype=dtype)
        self.rows = 0
        # array.array appends as cheaply as a list and becomes a numpy array without a Python loop.
        self.counts = array("q")
        self.created_at = array("d")
        self.model_seconds = array("d")
        self.ids: list[str] = []
        self.versions: list[str] = []
        self.version_calls: list[int] = []

    @classmethod
    def like(
        cls, names: list[str], features: npt.NDArray[Any], outputs: npt.NDArray[Any]
    ) -> Columns:
        return cls(names, features.shape[1], outputs.dtype, len(features))

    def accepts(self, names: list[str], outputs: npt.NDArray[Any]) -> bool:
        return (names is self.names or names == self.names) and outputs.dtype == self.outputs.dtype

    def add(
        self,
        version: str,
        ids: list[str],
        features: npt.NDArray[Any],
        outputs: npt.NDArray[Any],
        created_at: float,
        model_seconds: float = 0.0,
    ) -> None:
        start = self.rows
        end = start + len(ids)
        if end > len(self.features):
            capacity = max(2 * len(self.features), end)
            self.features = np.resize(self.features, (capacity, self.features.shape[1]))
            self.outputs = np.resize(self.outputs, capacity)
        if end == start + 1:  # one row (most calls): item assignment, ~2x cheaper than a slice
            self.features[start] = features
            self.outputs[start] = outputs[0]
        else:
            self.features[start:end] = features
            self.outputs[start:end] = outputs
        self.rows = end
        self.counts.append(len(ids))
        self.ids.extend(ids)
        self.created_at.append(created_at)
        self.model_seconds.append(model_seconds)
        if self.versions and self.versions[-1] == version:
            self.version_calls[-1] += 1
        else:
            self.versions.append(version)
            self.version_calls.append(1)

    def packed(self) -> Packed:
        """The prediction log's message: slices and one joined text, no per-row work."""
        ids = self.ids
        return Packed(
            names=self.names,
            counts=np.array(self.counts, dtype=np.int64),
            id_text="".join(ids),
            id_lengths=np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)),
            features=self.features[: self.rows],
            outputs=self.outputs[: self.rows],
            created_at=np.array(self.created_at, dtype=np.float64),
            versions=self.versions,
            version_calls=np.array(self.version_calls, dtype=np.int64),
        )


def append_call(
    segments: MutableSequence[Any],
    version: str,
    ids: list[str],
    features: npt.NDArray[Any],
    names: list[str],
    outputs: npt.NDArray[Any],
    created_at: float,
    model_seconds: float = 0.0,
) -> None:
    """Add one call to the last of ``segments`` if that takes its names and output dtype, else to
    a new segment; other items in ``segments`` (the log's flush markers) end a segment too."""
    segment = segments[-1] if segments else None
    if not isinstance(segment, Columns) or not segment.accepts(names, outputs):
        segment = Columns.like(names, features, outputs)
        segments.append(segment)
    segment.add(version, ids, features, outputs, created_at, model_seconds)


class CallBuffer:
    """Successful ``/predict`` calls since the last :meth:`take`, at most ``max_rows`` rows.

    The bound only matters if the thread that takes the calls stops: a call that would pass it is
    dropped and counted (``dropped_rows``), never waited for.
    """

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.dropped_rows = 0
        self._lock = threading.Lock()
        self._segments: list[Columns] = []
        self._rows = 0

    def add(
        self,
        version: str,
        ids: list[str],
        features: npt.NDArray[np.float64],
        names: list[str],
        outputs: npt.NDArray[Any],
        model_seconds: float,
        created_at: float,
    ) -> None:
        rows = len(ids)
        with self._lock:
            if self._rows >= self.max_rows:
                self.dropped_rows += rows
                return
            self._rows += rows
            append_call(
                self._segments, version, ids, features, names, outputs, created_at, model_seconds
            )

    @property
    def rows(self) -> int:
        """Rows added since the last take (read without the lock: for a gauge)."""
        return self._rows

    def take(self) -> list[Columns]:
        """Everything added so far, oldest first; the buffer starts empty again."""
        with self._lock:
            segments, self._segments, self._rows = self._segments, [], 0
        return segments
