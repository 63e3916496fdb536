"""The recent-input window behind the drift gauges.

Requests never touch it: once a second the housekeeping thread adds the last rows the call buffer
collected, and computes PSI against the bundle's training reference (mloop.reference, the same
binning the pipeline wrote).
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import numpy.typing as npt

from mloop.reference import psi


class RecentWindow:
    """The last ``size`` rows predicted, as the arrays added (a deque of them, not a ring buffer:
    adding keeps the array, and the oldest arrays drop out whole). It holds at most ``size`` rows
    plus one array.
    """

    def __init__(self, size: int, n_features: int) -> None:
        self._size = size
        self._n_features = n_features
        self._arrays: deque[npt.NDArray[np.float64]] = deque()
        self._rows = 0
        self._lock = threading.Lock()

    def add(self, batch: npt.NDArray[np.float64]) -> None:
        with self._lock:
            self._arrays.append(batch)
            self._rows += len(batch)
            while self._rows - len(self._arrays[0]) >= self._size:
                self._rows -= len(self._arrays.popleft())

    def __len__(self) -> int:
        return min(self._rows, self._size)

    def snapshot(self) -> npt.NDArray[np.float64]:
        with self._lock:
            arrays = list(self._arrays)
        if not arrays:
            return np.empty((0, self._n_features))
        return np.concatenate(arrays)[-self._size :]

    def drift(
        self, reference: dict[str, dict[str, object]], features: list[str]
    ) -> dict[str, float]:
        rows = self.snapshot()
        if len(rows) == 0:
            return {}
        return {name: psi(reference[name], rows[:, i]) for i, name in enumerate(features)}
