"""What one worker process holds while serving: the model store, the log, the drift window.

``predict`` is the hot path (bytes in, bytes out): decode and validate, one model call, leave the
rows in the call buffer (for the metrics, the drift window and the log), encode. No pandas, no
I/O, no lock: the buffers it writes belong to the event loop's thread (``service.loop_owner``).
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from mloop.bundle import Bundle
from mloop.metrics import classification_metrics, regression_metrics
from mloop.models.store import predict_with_proba
from service import metrics
from service.call_buffer import CallBuffer, Columns
from service.codec import RecordCodec, RequestError
from service.drift import RecentWindow
from service.label_codec import Label, LabelCodec
from service.loop_owner import LoopOwner
from service.model_store import LoadedModel, ModelStore
from service.prediction_ids import Tags
from service.settings import Settings

if TYPE_CHECKING:
    from service.prediction_log import FeedbackResult, PredictionLog

log = logging.getLogger("mloop.service")
GIL_SWITCH_INTERVAL_S = 0.0005
# How long a thread waits for the event loop to hand over the buffers. Under load the loop gets
# to it within milliseconds; past this (a stalled or stopping loop) the rows stay for next time.
HANDOVER_TIMEOUT_S = 1.0
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


class Runtime:
    def __init__(self, settings: Settings) -> None:
        from threadpoolctl import threadpool_limits

        # Requests are the parallelism: an OpenMP pool per predict (native scikit-learn boosting)
        # only adds hand-off latency, and oversubscribes a pinned core.
        threadpool_limits(1)
        self.settings = settings
        self.store = ModelStore(
            settings.bundle_dir,
            self._codec_for,
            self._labels_for,
            on_swap=self._swapped,
            on_failure=self._failed,
        )
        self.window: RecentWindow | None = None
        self.prediction_log: PredictionLog | None = None
        self.samples = metrics.HotPathSamples() if settings.metrics_enabled else None
        # Prediction ids (service.prediction_ids): 64 random bits per process, a counter, and 64
        # random bits per request from a pool drawn in blocks (a syscall per request would cost
        # ~1 us). Unique across workers and restarts, sorted by the counter, and unguessable.
        self._id_prefix = os.urandom(8).hex() + "-"
        self._request_counter = itertools.count(1)
        self._tags = Tags()
        self._tag_pool = self._tags.pool  # refilled in place
        # A batch's ids are its request id plus "-<row>": the suffixes are built once, since
        # formatting 10,000 integers per request costs ~0.8 ms against ~0.3 ms for concatenation.
        self._row_suffixes = [f"-{row}" for row in range(settings.max_batch_rows)]
        # What successful calls leave for the model metrics, the drift window and the log.
        self.calls = (
            CallBuffer(settings.prediction_log_queue_rows, self._id_prefix)
            if settings.metrics_enabled or settings.prediction_log_enabled
            else None
        )
        # The thread that writes the call buffer and the HTTP timings, and alone takes them.
        self.owner = LoopOwner()
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._log_synced = (0, 0, 0)
        self._quality_lock = threading.Lock()

    # ------------------------------------------------------------------ model lifecycle
    def _codec_for(self, bundle: Bundle) -> RecordCodec:
        return RecordCodec(bundle.schema, self.settings.max_batch_rows, self.settings.out_of_range)

    def _labels_for(self, bundle: Bundle) -> LabelCodec:
        return LabelCodec(bundle.schema, bundle.classes, self.settings.max_feedback_items)

    def _swapped(self, old: LoadedModel | None, new: LoadedModel) -> None:
        meta = new.bundle.meta
        if old is None:
            if self.settings.metrics_enabled:  # the drift gauges are metrics too
                self.window = RecentWindow(self.settings.drift_window, len(new.bundle.features))
            if meta["task"] == "regression":
                target = new.bundle.reference.get("target", {})
                metrics.configure_predicted_value_buckets(list(target.get("bin_edges", [])))
        else:
            old_meta = old.bundle.meta
            metrics.retire(
                metrics.model_info,
                old_meta["registered_model"], old.version, old_meta.get("candidate", ""),
                old_meta.get("serving", ""), str(old_meta["git_commit"])[:12],
            )  # fmt: skip
        metrics.model_info.labels(
            meta["registered_model"], new.version, meta.get("candidate", ""),
            meta.get("serving", ""), str(meta["git_commit"])[:12],
        ).set(1)  # fmt: skip
        for name, value in (meta.get("metrics") or {}).items():
            metrics.holdout_metric.labels(name).set(float(value))
        metrics.model_loaded.set(new.loaded_at)
        metrics.model_reloads.labels("success").inc()

    def _failed(self, message: str) -> None:
        metrics.model_reloads.labels("failure").inc()

    # ------------------------------------------------------------------ hot path
    def predict(self, body: bytes, in_worker: bool = False) -> tuple[int, bytes]:
        """Answer one ``/predict`` body; on the event loop's thread unless ``in_worker``."""
        model = self.store.current
        if model is None:
            return 503, NO_MODEL
        try:
            batch = model.codec.decode(body)
        except RequestError as exc:
            if exc.out_of_range is not None:
                self._count_out_of_range(model, exc.out_of_range)
            return exc.status, orjson.dumps({"detail": exc.detail})
        features = batch.features
        if batch.out_of_range is not None:
            self._count_out_of_range(model, batch.out_of_range)
        bundle = model.bundle
        predictor = bundle.predictor
        if (
            bundle.batch_predictor is not None
            and len(features) >= self.settings.native_batch_min_rows
        ):
            predictor = bundle.batch_predictor
        started = time.perf_counter()
        if model.classifier:
            outputs, proba = predict_with_proba(predictor, features)
        else:
            outputs, proba = predictor.predict(features), None
        model_seconds = time.perf_counter() - started

        version = model.version
        number = next(self._request_counter)
        pool = self._tag_pool
        tag = pool.pop() if pool else self._tags.refill().pop()
        base = f"{self._id_prefix}{number:012x}{tag:016x}"  # prediction_ids.request_id, inlined
        single = batch.single
        if self.calls is not None:
            add: Callable[..., None] = self.calls.add
            if in_worker:  # only the loop's thread writes the buffer: hand the rows over
                add = functools.partial(self.owner.call_soon, add)
            names = model.codec.features
            add(version, number, tag, single, features, names, outputs, model_seconds, time.time())
        payload: dict[str, Any]
        if single:
            payload = {"id": base, "prediction": outputs[0].item(), "model_version": version}
            if proba is not None:
                payload["probabilities"] = proba[0]
        else:
            ids = [base + suffix for suffix in self._row_suffixes[: len(outputs)]]
            payload = {"model_version": version, "ids": ids, "predictions": outputs}
            if proba is not None:
                payload["probabilities"] = proba
        return 200, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)

    def predict_in_worker(self, body: bytes) -> tuple[int, bytes]:
        """``predict`` in a worker thread (a large batch, so it does not hold the event loop)."""
        return self.predict(body, in_worker=True)

    @staticmethod
    def _count_out_of_range(model: LoadedModel, counts: npt.NDArray[np.int64]) -> None:
        for name, count in zip(model.codec.features, counts.tolist()):
            if count:
                metrics.feature_out_of_range.labels(name).inc(count)

    # ------------------------------------------------------------------ feedback and quality
    def feedback_body(self, body: bytes) -> tuple[int, bytes]:
        """Answer one ``/feedback`` body (in a worker thread): decode, check, store, count."""
        model = self.store.current
        if model is None:
            return 503, NO_MODEL
        if self.prediction_log is None:
            return 503, NO_LOG
        try:
            items = model.labels.decode(body)
        except RequestError as exc:
            return exc.status, orjson.dumps({"detail": exc.detail})
        result = self.feedback(items)
        return 200, orjson.dumps(
            {
                "accepted": len(result.accepted),
                "unchanged": len(result.unchanged),
                "unknown_ids": result.unknown,
                "conflicting_ids": result.conflicts,
            }
        )

    def feedback(self, items: list[tuple[str, Label]]) -> FeedbackResult:
        """Store checked labels (see ``PredictionLog.record_feedback`` for the policy)."""
        if self.prediction_log is None:
            raise RuntimeError("the prediction log is disabled (MLOOP_PREDICTION_LOG_ENABLED)")
        self.drain()  # a label may follow its prediction within the second: log it first
        result = self.prediction_log.record_feedback(items, time.time())
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
        model = self.store.current
        if self.prediction_log is None or model is None:
            return
        with self._quality_lock:
            since = time.time() - self.settings.quality_window_s
            rows = self.prediction_log.labelled_rows(received_since=since)
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

    def log_status(self) -> str:
        """The prediction log for /ready: ok, down (its writer died; restarting) or disabled."""
        if not self.settings.prediction_log_enabled:
            return "disabled"
        plog = self.prediction_log
        return "ok" if plog is not None and plog.running else "down"

    # ------------------------------------------------------------------ background work
    def start(self) -> None:
        """Start the background work; called on the event loop that serves the requests."""
        self.owner.bind()
        # Background threads (log shipper, housekeeping, bundle watcher) hold the GIL for at most
        # this long while a request waits for it; CPython's default of 5 ms alone would exceed
        # the 2 ms p99 budget of an unloaded request.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        if self.settings.prediction_log_enabled:
            from service.prediction_log import PredictionLog

            self.prediction_log = PredictionLog(
                self.settings.prediction_log_url,
                queue_size=self.settings.prediction_log_queue_rows,
                flush_interval_s=self.settings.prediction_log_flush_interval_s,
            )
            self.prediction_log.start()
        if self.store.current is None:
            self.store.reload()
        self.store.start_watching(self.settings.watch_interval_s)
        self._housekeeper = threading.Thread(
            target=self._housekeeping, name="housekeeping", daemon=True
        )
        self._housekeeper.start()
        # A full collection walks every tracked object; with the model runtimes imported that is
        # ~150 ms of stalled event loop, measured under load. What exists after start-up lives as
        # long as the process, so it is moved out of the collector's sight.
        gc.collect()
        gc.freeze()

    def _housekeeping(self) -> None:
        ticks = 0
        while not self._stop.wait(self.settings.housekeeping_interval_s):
            ticks += 1
            try:
                self.housekeeping_tick(refresh_quality=ticks % 30 == 0)
            except Exception:  # noqa: BLE001 - the gauges may lag, the service must not stop
                log.exception("housekeeping failed")

    def _take(self) -> tuple[list[Columns], metrics.HttpTimings]:
        """What the requests left since the last take; on the event loop's thread, which owns it."""
        assert self.calls is not None
        segments = self.calls.take()
        http = self.samples.take_http() if self.samples is not None else {}
        return segments, http

    def drain(self) -> None:
        """Hand what the requests left to the metrics, the drift window and the prediction log.

        Before every exposition, every second, and before feedback is logged (a label may follow
        its prediction within the second). Serialised: a feedback request must not overtake a
        drain in progress whose rows it may be about to label.
        """
        if self.calls is None:  # metrics and log off: nothing is recorded
            return
        with self._drain_lock:
            nothing: tuple[list[Columns], metrics.HttpTimings] = ([], {})  # if the loop stalls
            segments, http = self.owner.run(self._take, HANDOVER_TIMEOUT_S, nothing)
            model = self.store.current
            for segment in segments:
                if self.samples is not None and model is not None:
                    self.samples.fold(segment, model.bundle.meta["task"])
                if self.window is not None:
                    # A copy: a view would keep the whole segment alive for as long as the window.
                    first = max(0, segment.rows - self.settings.drift_window)
                    self.window.add(segment.features[first : segment.rows].copy())
                if self.prediction_log is not None:
                    self.prediction_log.enqueue(segment)
            if self.samples is not None:
                self.samples.fold_http(http)

    def housekeeping_tick(self, refresh_quality: bool = False) -> None:
        self.drain()
        for pid in metrics.forget_dead_workers():
            log.warning("worker %d is gone: its gauges are dropped from /metrics", pid)
        model = self.store.current
        if model is not None and self.window is not None:
            scores = self.window.drift(model.bundle.reference["features"], model.bundle.features)
            for name, value in scores.items():
                metrics.feature_drift.labels(name).set(value)
            metrics.drift_window_rows.set(len(self.window))
        plog = self.prediction_log
        if plog is not None:
            # The call buffer only drops if this thread stalls; those rows never reach the log.
            buffered_drops = self.calls.dropped_rows if self.calls is not None else 0
            written, dropped = plog.written_rows, plog.dropped_rows + buffered_drops
            restarts = plog.writer_restarts
            metrics.log_written.inc(written - self._log_synced[0])
            metrics.log_dropped.inc(dropped - self._log_synced[1])
            metrics.log_writer_restarts.inc(restarts - self._log_synced[2])
            metrics.log_writer_up.set(1 if plog.running else 0)
            self._log_synced = (written, dropped, restarts)
            buffered = self.calls.rows if self.calls is not None else 0
            metrics.log_queue_depth.set(plog.queue_depth() + buffered)
            if refresh_quality:
                self.update_quality()

    def stop(self) -> None:
        """Stop the background work; on the event loop's thread, after the last request."""
        self._stop.set()
        self.store.stop()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=5)
        self.drain()  # the last calls reach the log before it closes
        if self.prediction_log is not None:
            self.prediction_log.close()
        self.housekeeping_tick()  # the last samples and log counters reach the metrics
