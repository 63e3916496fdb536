"""``/feedback``: labels checked against the served model, stored against logged predictions, and
the live-error gauges they feed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import orjson

from mloop.metrics import classification_metrics, regression_metrics
from service.codecs.labels import Label
from service.codecs.records import RequestError
from service.telemetry import metrics

if TYPE_CHECKING:
    from service.prediction_log.reader import FeedbackResult
    from service.runtime.core import Runtime

log = logging.getLogger("mloop.service")
# Also the hot path's answer without a model (service.runtime.core).
NO_MODEL = orjson.dumps(
    {"detail": [{"loc": [], "msg": "no model loaded yet", "type": "not_ready"}]}
)
NO_LOG = orjson.dumps(
    {
        "detail": [
            {
                "loc": [],
                "msg": "the prediction log is disabled (MLOOP_PREDICTION_LOG_ENABLED)",
                "type": "unavailable",
            }
        ]
    }
)


class Feedback:
    """Answers ``/feedback`` bodies (in worker threads) and keeps the live-error gauges."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._quality_lock = threading.Lock()

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """Answer one ``/feedback`` body (in a worker thread): decode, check, store, count."""
        model = self.runtime.store.current
        if model is None:
            return 503, NO_MODEL
        if self.runtime.prediction_log is None:
            return 503, NO_LOG
        try:
            items = model.labels.decode(body)
        except RequestError as exc:
            return exc.status, orjson.dumps({"detail": exc.detail})
        result = self.store_labels(items)
        return 200, orjson.dumps(
            {
                "accepted": len(result.accepted),
                "unchanged": len(result.unchanged),
                "unknown_ids": result.unknown,
                "conflicting_ids": result.conflicts,
            }
        )

    def store_labels(self, items: list[tuple[str, Label]]) -> FeedbackResult:
        """Store checked labels (see ``LogReader.record_feedback`` for the policy)."""
        if self.runtime.prediction_log is None or self.runtime.log_reader is None:
            raise RuntimeError("the prediction log is disabled (MLOOP_PREDICTION_LOG_ENABLED)")
        self.runtime.housekeeper.drain()  # a label may follow its prediction within the second: log it first
        if not self.runtime.prediction_log.flush():
            log.warning("prediction log: flush before feedback timed out; ids may be unknown")
        result = self.runtime.log_reader.record_feedback(items, time.time())
        for outcome, ids in (
            ("accepted", result.accepted),
            ("unchanged", result.unchanged),
            ("unknown_id", result.unknown),
            ("conflict", result.conflicts),
        ):
            metrics.feedback_rows.labels(outcome).inc(len(ids))
        try:
            self.update_quality()
        except (
            Exception
        ):  # noqa: BLE001 - the labels are stored: the gauges may lag, not the answer
            log.exception("live quality update failed")
        return result

    def update_quality(self) -> None:
        """Live error of the labels received in the quality window, per model version."""
        model = self.runtime.store.current
        if self.runtime.log_reader is None or model is None:
            return
        with self._quality_lock:
            since = time.time() - self.runtime.settings.quality_window_s
            rows = self.runtime.log_reader.labelled_rows(received_since=since)
            for version, group in rows.groupby("model_version"):
                actual = group["actual"].to_numpy(dtype=float)
                predicted = group["prediction"].to_numpy(dtype=float)
                if model.bundle.meta["task"] == "regression":
                    values = regression_metrics(actual, predicted)
                    wanted = ("rmse", "mae")
                else:
                    # the served model's classes decide binary or macro-averaged multiclass
                    values = classification_metrics(actual, predicted, None, model.bundle.classes)
                    wanted = ("accuracy", "f1")
                for name in wanted:
                    metrics.live_error.labels(str(version), name).set(values[name])
                metrics.live_labelled_rows.labels(str(version)).set(len(group))
