"""The service dashboard: traffic, latency, errors, batch sizes, the prediction log."""

from __future__ import annotations

from dashboards.panels import PanelSpec, Query

UID, TITLE = "mloop-service", "mloop / service"
LATENCY = "route:mloop_http_request_duration_seconds"
DESCRIPTION = "The prediction API: is it answering, how fast, and is every prediction logged?"

ROWS = [
    (
        "Traffic and latency",
        [
            PanelSpec(
                "Requests per second by route and status",
                "Answers per second over 5 minutes, by route template and status class.",
                "A drop to zero: check clients and /ready. A rise of 4xx: a client sends bad input "
                "(the 422 body names the field). Any 5xx: read the service's log.",
                [Query("sum by (route, status) (route_status:mloop_http_requests:rate5m)",
                       "{{route}} {{status}}")],
                unit="reqps",
            ),  # fmt: skip
            PanelSpec(
                "/predict latency percentiles",
                "p50, p95 and p99 of /predict over 5 minutes (request start to the end of the body).",
                "p99 over 50 ms (the SLO, alert PredictLatencyHigh): the CPU is saturated or batches "
                "are large; add workers or replicas, compare with the batch-size panel.",
                [Query(f"max by (route) ({LATENCY}:{q}_5m{{route=\"/predict\"}})", q)
                 for q in ("p50", "p95", "p99")],
                unit="s",
            ),  # fmt: skip
        ],
    ),
    (
        "Errors and batches",
        [
            PanelSpec(
                "5xx ratio",
                "Share of answers that are 5xx, over 5 minutes. Bad input is a 4xx, never a 5xx.",
                "Above 1% for 5 minutes pages (ServerErrorsHigh): read the service's log, check "
                "that a model is loaded (/ready).",
                [Query("max by (instance) (instance:mloop_http_5xx:ratio_rate5m)", "{{instance}}")],
                unit="percentunit",
            ),  # fmt: skip
            PanelSpec(
                "Rows per /predict call",
                "Median and p99 batch size over 5 minutes.",
                "Batches near MLOOP_MAX_BATCH_ROWS: clients are splitting work badly or need a "
                "higher limit; large batches raise the latency percentiles.",
                [Query(f"histogram_quantile({q}, sum by (le) (rate(mloop_prediction_batch_rows_bucket[5m])))",
                       name) for q, name in (("0.5", "median"), ("0.99", "p99"))],
            ),  # fmt: skip
            PanelSpec(
                "Rows predicted per second by model version",
                "Predicted rows per second over 5 minutes, by the version that answered.",
                "Two versions at once for long: a worker did not reload (check reloads on the model "
                "dashboard).",
                [Query("sum by (model_version) (model_version:mloop_predictions:rate5m)",
                       "v{{model_version}}")],
                unit="rowsps",
            ),  # fmt: skip
            PanelSpec(
                "Requests timed out",
                "Connections closed because a request did not arrive within MLOOP_REQUEST_TIMEOUT_S.",
                "A steady rate: slow or stalled clients, or an attack holding connections open.",
                [Query("sum(rate(mloop_http_request_timeouts_total[5m]))", "timeouts")],
                unit="reqps",
            ),  # fmt: skip
        ],
    ),
    (
        "Prediction log",
        [
            PanelSpec(
                "Log rows written and dropped per second",
                "Prediction rows written to the log, and rows dropped because its queue was full.",
                "Any drop (PredictionLogDropping): the database is slow or down; retraining will miss "
                "those rows. Check the writer panel and the database.",
                [Query("sum(rate(mloop_prediction_log_written_rows_total[5m]))", "written"),
                 Query("sum(rate(mloop_prediction_log_dropped_rows_total[5m]))", "dropped")],
                unit="rowsps",
            ),  # fmt: skip
            PanelSpec(
                "Log queue and writer",
                "Rows waiting to be written, and whether the writer process runs (1).",
                "A growing queue: the database cannot keep up. Writer 0 for minutes "
                "(PredictionLogWriterDown): read the service's log; it restarts by itself.",
                [Query("sum(mloop_prediction_log_queue_rows)", "queued rows"),
                 Query("min(mloop_prediction_log_writer_up)", "writer up")],
            ),  # fmt: skip
        ],
    ),
]
