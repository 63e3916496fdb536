"""The recent-input window behind the drift gauges.

The hot path only copies rows into a preallocated ring buffer; PSI against the bundle's training
reference (mloop.reference, the same binning the pipeline wrote) is computed by the housekeeping
thread, never per request.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

from mloop.reference import psi


class RecentWindow:
    def __init__(self, size: int, n_features: int) -> None:
        self._rows = np.zeros((size, n_features))
        self._size = size
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()

    def add(self, batch: npt.NDArray[np.float64]) -> None:
        batch = batch[-self._size :]
        n = len(batch)
        with self._lock:
            end = self._next + n
            if end <= self._size:
                self._rows[self._next : end] = batch
            else:
                first = self._size - self._next
                self._rows[self._next :] = batch[:first]
                self._rows[: n - first] = batch[first:]
            self._next = end % self._size
            self._filled = min(self._size, self._filled + n)

    def __len__(self) -> int:
        return self._filled

    def snapshot(self) -> npt.NDArray[np.float64]:
        with self._lock:
            return self._rows[: self._filled].copy()

    def drift(
        self, reference: dict[str, dict[str, object]], features: list[str]
    ) -> dict[str, float]:
        rows = self.snapshot()
        if len(rows) == 0:
            return {}
        return {name: psi(reference[name], rows[:, i]) for i, name in enumerate(features)}
