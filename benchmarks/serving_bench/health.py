"""The services' own account after the load: a few metrics that reveal trouble, the logged rows.

``scrape_metrics`` reads 5xx and 4xx answers, prediction log writes, drops and backlog, and
reloads from GET /metrics; ``logged_rows`` counts the rows of the shared prediction log (pred.db).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

from serving_bench.servers import http_request


def scrape_metrics(port: int) -> dict[str, float]:
    """A few service metrics that reveal trouble: 5xx, log drops and backlog, reloads."""
    status, payload = http_request(port, "GET", "/metrics")
    if status != 200:
        return {}
    wanted = {
        "mloop_http_requests_total": None,
        "mloop_predictions_total": None,
        "mloop_prediction_log_written_rows_total": None,
        "mloop_prediction_log_dropped_rows_total": None,
        "mloop_prediction_log_queue_rows": None,
        "mloop_model_reloads_total": None,
    }
    found: dict[str, float] = {}
    for line in payload.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0]
        if name not in wanted:
            continue
        if name == "mloop_http_requests_total":
            match = re.search(r'route="([^"]*)".*status="(\dxx)"', series)
            if not match:
                continue
            series = f"http {match.group(1)} {match.group(2)}"
        elif name == "mloop_model_reloads_total":
            match = re.search(r'result="(\w+)"', series)
            series = f"reloads {match.group(1) if match else '?'}"
        else:
            series = name.removeprefix("mloop_")
        found[series] = found.get(series, 0.0) + float(value)
    return found


def logged_rows(workdir: Path) -> int | None:
    path = workdir / "pred.db"
    if not path.is_file():
        return None
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
