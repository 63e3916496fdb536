"""Once a second, off the request path: take what the requests left (on the event loop's
thread, which owns it) and hand it to the metrics, the drift window and the prediction log.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from service.prediction_log.buffer import Columns
from service.telemetry import metrics
from service.telemetry.folding import HttpTimings

if TYPE_CHECKING:
    from service.runtime.core import Runtime

log = logging.getLogger("mloop.service")
# How long a thread waits for the event loop to hand over the buffers. Under load the loop gets
# to it within milliseconds; past this (a stalled or stopping loop) the rows stay for next time.
HANDOVER_TIMEOUT_S = 1.0


class Housekeeper:
    """The housekeeping thread, and the drain that every exposition and feedback runs first."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._drain_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_synced = (0, 0, 0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="housekeeping", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; then the last drain and tick (the last calls reach the log)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(self.runtime.settings.housekeeping_interval_s):
            ticks += 1
            try:
                self.tick(refresh_quality=ticks % 30 == 0)
            except Exception:  # noqa: BLE001 - the gauges may lag, the service must not stop
                log.exception("housekeeping failed")

    def _take(self) -> tuple[list[Columns], HttpTimings]:
        """What the requests left since the last take; on the event loop's thread, which owns it."""
        assert self.runtime.calls is not None
        segments = self.runtime.calls.take()
        http = self.runtime.samples.take_http() if self.runtime.samples is not None else {}
        return segments, http

    def drain(self) -> None:
        """Hand what the requests left to the metrics, the drift window and the prediction log.

        Before every exposition, every second, and before feedback is logged (a label may follow
        its prediction within the second). Serialised: a feedback request must not overtake a
        drain in progress whose rows it may be about to label.
        """
        if self.runtime.calls is None:  # metrics and log off: nothing is recorded
            return
        with self._drain_lock:
            nothing: tuple[list[Columns], HttpTimings] = ([], {})  # if the loop stalls
            segments, http = self.runtime.owner.run(self._take, HANDOVER_TIMEOUT_S, nothing)
            model = self.runtime.store.current
            for segment in segments:
                if self.runtime.samples is not None and model is not None:
                    self.runtime.samples.fold(segment, model.bundle.meta["task"])
                if self.runtime.window is not None:
                    # A copy: a view would keep the whole segment alive for as long as the window.
                    first = max(0, segment.rows - self.runtime.settings.drift_window)
                    self.runtime.window.add(segment.features[first : segment.rows].copy())
                if self.runtime.prediction_log is not None:
                    self.runtime.prediction_log.enqueue(segment)
            if self.runtime.samples is not None:
                self.runtime.samples.fold_http(http)

    def tick(self, refresh_quality: bool = False) -> None:
        """Drain, then refresh the drift gauges and the log's counts (and, now and then, the
        live error)."""
        self.drain()
        for pid in metrics.forget_dead_workers():
            log.warning("worker %d is gone: its gauges are dropped from /metrics", pid)
        model = self.runtime.store.current
        if model is not None and self.runtime.window is not None:
            scores = self.runtime.window.drift(
                model.bundle.reference["features"], model.bundle.features
            )
            for name, value in scores.items():
                metrics.feature_drift.labels(name).set(value)
            metrics.drift_window_rows.set(len(self.runtime.window))
        plog = self.runtime.prediction_log
        if plog is not None:
            # The call buffer only drops if this thread stalls; those rows never reach the log.
            buffered_drops = (
                self.runtime.calls.dropped_rows if self.runtime.calls is not None else 0
            )
            written, dropped = plog.written_rows, plog.dropped_rows + buffered_drops
            restarts = plog.writer_restarts
            metrics.log_written.inc(written - self._log_synced[0])
            metrics.log_dropped.inc(dropped - self._log_synced[1])
            metrics.log_writer_restarts.inc(restarts - self._log_synced[2])
            metrics.log_writer_up.set(1 if plog.running else 0)
            self._log_synced = (written, dropped, restarts)
            buffered = self.runtime.calls.rows if self.runtime.calls is not None else 0
            metrics.log_queue_depth.set(plog.queue_depth() + buffered)
            if refresh_quality:
                self.runtime.feedback.update_quality()
