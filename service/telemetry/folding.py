"""The hot path's observations, folded into the Prometheus metrics in bulk once a second.

``observe_many`` reads three private attributes of prometheus-client's histogram child
(``_upper_bounds``, ``_buckets``, ``_sum``): the library has no bulk observe. pyproject.toml pins
the versions it was tested with, and tests/service/telemetry/test_folding.py fails if they change.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.telemetry.metrics import (
    batch_rows,
    http_duration,
    http_requests,
    predicted_class,
    prediction_duration,
    predictions,
)
from service.telemetry import metrics

if TYPE_CHECKING:
    from service.prediction_log.buffer import Columns


def observe_many(child: Any, values: npt.NDArray[Any]) -> None:
    """Add many observations to a histogram child in one pass.

    prometheus-client has no bulk observe, and one ``observe`` per value is a Python loop over the
    buckets. This adds the bucket counts and the sum through the child's value holders, the same
    objects ``observe`` updates (also in multiprocess mode, where they are the mmapped files).
    """
    if len(values) == 0:
        return
    bounds = np.asarray(child._upper_bounds)
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for index, count in enumerate(counts[: len(bounds)].tolist()):
        if count:
            child._buckets[index].inc(float(count))
    child._sum.inc(float(np.sum(values)))


HttpTimings = dict[int, "array[float]"]  # status code -> request seconds


class HotPathSamples:
    """What ``POST /predict`` observed, folded into the metrics in bulk instead of per request.

    Why not prometheus-client directly: measured with wrk on one core, its six calls per
    prediction (each a method with a lock; a histogram's a Python loop over its buckets) cost
    ~9 us of a ~42 us request. HTTP timings are appended to an array per status code
    (:meth:`http`, on the event loop's thread, which also takes them: no lock, see
    ``service.runtime.loop_owner``); the model's side arrives once a second as the call buffer's columns
    (:meth:`fold`). Both are folded on the housekeeping thread every second and before each
    ``/metrics`` answer, so a scrape of a single worker is exact; with several workers, another
    worker's last second arrives with its next fold.
    """

    def __init__(self) -> None:
        # An array keeps the seconds as C doubles: no float object outlives its request.
        self._http: HttpTimings = {}

    def http(self, status: int, seconds: float) -> None:
        samples = self._http.get(status)
        if samples is None:
            samples = self._http[status] = array("d")
        samples.append(seconds)

    def take_http(self) -> HttpTimings:
        """The HTTP timings recorded since the last take (on the thread that records them)."""
        http, self._http = self._http, {}
        return http

    @staticmethod
    def fold_http(http: HttpTimings) -> None:
        """Count and time taken HTTP timings (on any thread)."""
        for status, durations in http.items():
            http_requests.labels("POST", "/predict", f"{status // 100}xx").inc(len(durations))
            observe_many(http_duration.labels("POST", "/predict"), np.asarray(durations))

    @staticmethod
    def fold(segment: Columns, task: str) -> None:
        """Count and time the calls of one buffer segment, per model version."""
        counts = np.asarray(segment.counts, dtype=np.int64)
        seconds = np.asarray(segment.model_seconds, dtype=np.float64)
        outputs = segment.outputs[: segment.rows]
        call_ends = np.cumsum(segment.version_calls).tolist()
        row_ends = np.cumsum(counts).tolist()
        first_call = first_row = 0
        for version, last_call in zip(segment.versions, call_ends):
            last_row = row_ends[last_call - 1]
            predictions.labels(version).inc(last_row - first_row)
            observe_many(prediction_duration.labels(version), seconds[first_call:last_call])
            observe_many(batch_rows, counts[first_call:last_call])
            rows = outputs[first_row:last_row]
            if task == "regression":
                observe_many(metrics.predicted_value.labels(version), rows.astype(np.float64))
            else:
                labels, totals = np.unique(rows, return_counts=True)
                for label, total in zip(labels.tolist(), totals.tolist()):
                    predicted_class.labels(version, str(label)).inc(total)
            first_call, first_row = last_call, last_row
