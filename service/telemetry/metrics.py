"""Every Prometheus metric of the service, defined once. Alert rules and dashboards use these names.

Label sets are small and closed: routes are the app's own route templates (anything else is
``<unmatched>``), status is a class (``2xx``), versions change only on promotion. With several
workers, prometheus-client's multiprocess mode aggregates the per-worker files at ``/metrics``;
each gauge declares how workers combine (``livemax`` for identical values, ``livesum`` for totals,
``livemostrecent`` for window statistics each worker computes alike). Every gauge is a "live" one:
the files of a worker that died are dropped (:func:`forget_dead_workers`), so a crashed worker's last
model version or queue depth does not stay in the aggregate forever. Counters keep dead workers'
files: their counts happened, and dropping them would make a total go backwards.
"""

from __future__ import annotations

import os
import re

import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# `_created` series double every counter's cardinality and nothing here reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

NAMESPACE = "mloop"
# Sub-millisecond to seconds: the hot path takes ~0.1 ms, a 10k-row batch tens of ms.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
UNMATCHED_ROUTE = "<unmatched>"

# HTTP
http_requests = Counter(
    "http_requests", "HTTP requests by route template and status class.",
    ["method", "route", "status"], namespace=NAMESPACE,
)  # fmt: skip
http_duration = Histogram(
    "http_request_duration_seconds", "Time from request start to the end of the response body.",
    ["method", "route"], namespace=NAMESPACE, buckets=LATENCY_BUCKETS,
)  # fmt: skip
http_timeouts = Counter(
    "http_request_timeouts", "Connections closed because a request did not arrive in time "
    "(MLOOP_REQUEST_TIMEOUT_S).", namespace=NAMESPACE,
)  # fmt: skip

# Model
predictions = Counter(
    "predictions", "Rows predicted, by model version.", ["model_version"], namespace=NAMESPACE
)
prediction_duration = Histogram(
    "prediction_duration_seconds", "Model time alone for one /predict call (any batch size).",
    ["model_version"], namespace=NAMESPACE, buckets=LATENCY_BUCKETS,
)  # fmt: skip
batch_rows = Histogram(
    "prediction_batch_rows", "Rows per /predict call.", namespace=NAMESPACE, buckets=BATCH_BUCKETS
)
PREDICTED_VALUE_HELP = (
    "Distribution of predicted values (regression; buckets from the training target's quantiles)."
)
_predicted_value_edges: tuple[float, ...] = (0.0, 1.0)  # replaced per bundle, see below
predicted_value = Histogram(
    "predicted_value", PREDICTED_VALUE_HELP, ["model_version"], namespace=NAMESPACE,
    buckets=_predicted_value_edges,
)  # fmt: skip
predicted_class = Counter(
    "predicted_class", "Predicted rows per class (classification).",
    ["model_version", "predicted_class"], namespace=NAMESPACE,
)  # fmt: skip
model_info = Gauge(
    "model_info", "1 for the model version being served.",
    ["registered_model", "version", "candidate", "serving", "git_commit"],
    namespace=NAMESPACE, multiprocess_mode="livemax",
)  # fmt: skip
# livemax, not livemin: a worker still starting up holds 0 here until its first load.
model_loaded = Gauge(
    "model_loaded_timestamp_seconds", "When the served model was loaded (age: time() - this).",
    namespace=NAMESPACE, multiprocess_mode="livemax",
)  # fmt: skip
model_reloads = Counter(
    "model_reloads", "Model reload attempts by result (success, failure).", ["result"],
    namespace=NAMESPACE,
)  # fmt: skip

# Data
feature_drift = Gauge(
    "feature_drift_psi", "Population stability index of the recent window against the training "
    "reference (0 same; > 0.25 significant shift).", ["feature"], namespace=NAMESPACE,
    multiprocess_mode="livemostrecent",
)  # fmt: skip
feature_out_of_range = Counter(
    "feature_out_of_range", "Input values outside the schema's range (counted, whatever the policy).",
    ["feature"], namespace=NAMESPACE,
)  # fmt: skip
drift_window_rows = Gauge(
    "drift_window_rows", "Rows in the window the drift gauges are computed on.",
    namespace=NAMESPACE, multiprocess_mode="livemostrecent",
)  # fmt: skip

# Quality (needs feedback)
live_error = Gauge(
    "live_error", "Error of the recent feedback window: rmse/mae (regression) or accuracy/f1 "
    "(classification), by model version.", ["model_version", "metric"], namespace=NAMESPACE,
    multiprocess_mode="livemostrecent",
)  # fmt: skip
live_labelled_rows = Gauge(
    "live_labelled_rows", "Labelled predictions in the feedback window, by model version: the "
    "sample behind mloop_live_error.", ["model_version"], namespace=NAMESPACE,
    multiprocess_mode="livemostrecent",
)  # fmt: skip
holdout_metric = Gauge(
    "model_holdout_metric", "The served model's metrics on its held-out test split (from its "
    "bundle): what the live error is compared with.", ["metric"], namespace=NAMESPACE,
    multiprocess_mode="livemostrecent",
)  # fmt: skip
feedback_rows = Counter(
    "feedback", "Feedback labels by result: accepted, unchanged (sent again), unknown_id, "
    "conflict (another label was stored first: refused).", ["result"], namespace=NAMESPACE,
)  # fmt: skip

# Prediction log
log_written = Counter(
    "prediction_log_written_rows", "Prediction rows written to the log.", namespace=NAMESPACE
)
log_dropped = Counter(
    "prediction_log_dropped_rows", "Prediction rows dropped because the log queue was full.",
    namespace=NAMESPACE,
)  # fmt: skip
log_queue_depth = Gauge(
    "prediction_log_queue_rows", "Rows waiting to be written.", namespace=NAMESPACE,
    multiprocess_mode="livesum",
)  # fmt: skip
# livemin: with several workers, 0 as soon as one of them has no writer.
log_writer_up = Gauge(
    "prediction_log_writer_up", "1 while the log's writer process runs; 0 while it is down and "
    "new rows are dropped (it is restarted).", namespace=NAMESPACE, multiprocess_mode="livemin",
)  # fmt: skip
log_writer_restarts = Counter(
    "prediction_log_writer_restarts", "Times the log's writer process died and was restarted.",
    namespace=NAMESPACE,
)  # fmt: skip


def configure_predicted_value_buckets(edges: list[float]) -> None:
    """Buckets of the predicted-value histogram: the training target's quantile edges.

    prometheus-client fixes buckets at construction, so the histogram is rebuilt when a bundle is
    first loaded (a reload keeps them, so the series stay comparable across versions).
    """
    global predicted_value, _predicted_value_edges
    from prometheus_client import REGISTRY

    wanted = tuple(sorted(set(edges))) or (0.0, 1.0)
    if wanted == _predicted_value_edges:
        return
    try:
        REGISTRY.unregister(predicted_value)
    except KeyError:
        pass
    predicted_value = Histogram(
        "predicted_value", PREDICTED_VALUE_HELP, ["model_version"],
        namespace=NAMESPACE, buckets=wanted,
    )  # fmt: skip
    _predicted_value_edges = wanted


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def retire(gauge: Gauge, *labelvalues: str) -> None:
    """Take a label set out of the exposition, e.g. the model version that was just replaced.

    In multiprocess mode prometheus-client cannot remove a series (the value stays in the worker's
    file and ``remove`` only warns), so the series is set to 0 there: ``model_info`` then reads
    1 for the versions some worker still serves and 0 for the retired ones.
    """
    if multiprocess_dir():
        gauge.labels(*labelvalues).set(0)
    else:
        gauge.remove(*labelvalues)


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def forget_dead_workers() -> list[int]:
    """Drop the live-gauge files of workers that no longer exist; returns their pids.

    Gunicorn users would call ``mark_process_dead`` from its ``child_exit`` hook, but uvicorn's
    supervisor, which restarts a dead worker, has no such hook. So every worker sweeps the shared
    directory from its housekeeping thread: one ``listdir`` and a signal-0 probe per file. Left
    alone: a pid reused before the next sweep (within a second) would adopt the dead file.
    """
    directory = multiprocess_dir()
    if not directory:
        return []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    pids = {int(match[1]) for name in names if (match := _LIVE_GAUGE_FILE.fullmatch(name))}
    dead = sorted(pid for pid in pids if pid != os.getpid() and not _process_exists(pid))
    for pid in dead:
        try:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except FileNotFoundError:  # another worker swept it first; leftovers go next time
            pass
    return dead


def exposition() -> tuple[bytes, str]:
    """The text exposition; in multiprocess mode, aggregated over every worker's files."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
