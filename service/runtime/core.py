"""What one worker process holds while serving: the model store, the log, the drift window.

``predict`` is the hot path (bytes in, bytes out): decode and validate, one model call, leave the
rows in the call buffer (for the metrics, the drift window and the log), encode. No pandas, no
I/O, no lock: the buffers it writes belong to the event loop's thread (``service.runtime.loop_owner``).
"""

from __future__ import annotations

import functools
import gc
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from mloop.bundle import Bundle
from mloop.models.store import predict_with_proba
from service.telemetry import metrics
from service.prediction_log.buffer import CallBuffer
from service.codecs.records import RecordCodec, RequestError
from service.telemetry.drift import RecentWindow
from service.telemetry.folding import HotPathSamples
from service.codecs.labels import LabelCodec
from service.runtime.feedback import NO_MODEL, Feedback
from service.runtime.housekeeping import Housekeeper
from service.runtime.loop_owner import LoopOwner
from service.model_store.store import LoadedModel, ModelStore
from service.prediction_log.ids import Tags
from service.settings import Settings

if TYPE_CHECKING:
    from service.prediction_log.reader import LogReader
    from service.prediction_log.shipper import LogShipper

log = logging.getLogger("mloop.service")
GIL_SWITCH_INTERVAL_S = 0.0005


class Runtime:
    """One worker's serving state: the model store, the hot path, the log, and the parts that run
    beside requests (:class:`Housekeeper`, :class:`Feedback`)."""

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
        self.prediction_log: LogShipper | None = None  # the write path
        self.log_reader: LogReader | None = None  # feedback and labelled rows
        self.samples = HotPathSamples() if settings.metrics_enabled else None
        # Prediction ids (service.prediction_log.ids): 64 random bits per process, a counter, and 64
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
        self.housekeeper = Housekeeper(self)
        self.feedback = Feedback(self)

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
            from service.prediction_log.reader import LogReader
            from service.prediction_log.shipper import LogShipper

            self.prediction_log = LogShipper(
                self.settings.prediction_log_url,
                queue_size=self.settings.prediction_log_queue_rows,
                flush_interval_s=self.settings.prediction_log_flush_interval_s,
            )
            self.prediction_log.start()
            self.log_reader = LogReader(
                self.settings.prediction_log_url, self.prediction_log.engine
            )
        if self.store.current is None:
            self.store.reload()
        self.store.start_watching(self.settings.watch_interval_s)
        self.housekeeper.start()
        # A full collection walks every tracked object; with the model runtimes imported that is
        # ~150 ms of stalled event loop, measured under load. What exists after start-up lives as
        # long as the process, so it is moved out of the collector's sight.
        gc.collect()
        gc.freeze()

    def stop(self) -> None:
        """Stop the background work; on the event loop's thread, after the last request."""
        self.store.stop()
        self.housekeeper.stop()
        self.housekeeper.drain()  # the last calls reach the log before it closes
        if self.prediction_log is not None:
            self.prediction_log.close()
        if self.log_reader is not None:
            self.log_reader.close()
        self.housekeeper.tick()  # the last samples and log counters reach the metrics
