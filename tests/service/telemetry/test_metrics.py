"""/metrics after a known sequence of requests: counts, labels, promtool, multiprocess workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.asgi import INLINE_BODY_BYTES
from tests.helpers.bundles import diabetes_rows, make_bundle, valid_record
from tests.helpers.net import wait_until
from tests.helpers.servers import FEEDBACK_AUTH, Server, start_server, stop_server


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def send_known_sequence(server: Server) -> None:
    X, _, features = diabetes_rows()
    with server.client() as client:
        for _ in range(3):
            assert client.post("/predict", json=valid_record()).status_code == 200
        rows = [dict(zip(features, map(float, row))) for row in X[:5]]
        assert client.post("/predict", json=rows).status_code == 200
        assert client.post("/predict", json={"bmi": 1}).status_code == 422
        out_of_range = dict(valid_record(), bmi=0.9)
        assert client.post("/predict", json=out_of_range).status_code == 422
        assert client.get("/no/such/route/123").status_code == 404


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("metrics")
    running = start_server(root, make_bundle(root / "champion", version="7"))
    yield running
    stop_server(running)


def test_counts_and_labels_after_a_known_sequence(fresh: Server) -> None:
    send_known_sequence(fresh)
    with fresh.client() as client:
        text = client.get("/metrics").text
    assert value(text, "mloop_predictions_total", model_version="7") == 8
    assert value(text, "mloop_prediction_batch_rows_count") == 4
    assert value(text, "mloop_prediction_batch_rows_sum") == 8
    assert value(text, "mloop_prediction_duration_seconds_count", model_version="7") == 4
    assert value(text, "mloop_predicted_value_count", model_version="7") == 8
    ok = {"method": "POST", "route": "/predict"}
    assert value(text, "mloop_http_requests_total", **ok, status="2xx") == 4
    assert value(text, "mloop_http_requests_total", **ok, status="4xx") == 2
    assert (
        value(text, "mloop_http_requests_total", method="GET", route="<unmatched>", status="4xx")
        == 1
    )
    assert "/no/such/route/123" not in text
    assert value(text, "mloop_http_request_duration_seconds_count", **ok) == 6
    assert value(text, "mloop_feature_out_of_range_total", feature="bmi") == 1
    info = [k for k in samples(text) if k[0] == "mloop_model_info"]
    assert len(info) == 1 and ("version", "7") in info[0][1]


def test_exposition_passes_promtool(fresh: Server) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (make system-deps)"
    with fresh.client() as client:
        client.post("/predict", json=valid_record())
        text = client.get("/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_batch_predicted_in_a_worker_thread_reaches_metrics_and_log(tmp_path: Path) -> None:
    """A body this large is answered off the event loop; its rows still reach every consumer."""
    X, _, features = diabetes_rows()
    rows = [dict(zip(features, map(float, row))) for row in X]
    assert len(json.dumps(rows)) > INLINE_BODY_BYTES
    bundle = make_bundle(tmp_path / "champion", version="9")
    server = start_server(tmp_path, bundle, MLOOP_MAX_BATCH_ROWS=str(len(rows)))
    try:
        with server.client() as client:
            answer = client.post("/predict", json=rows).json()
            text = client.get("/metrics").text
            labels = [{"id": answer["ids"][-1], "actual": 100.0}]
            feedback = client.post(
                "/feedback", json={"items": labels}, headers=FEEDBACK_AUTH
            ).json()
    finally:
        stop_server(server)
    assert value(text, "mloop_predictions_total", model_version="9") == len(rows)
    assert value(text, "mloop_prediction_batch_rows_count") == 1
    ok = {"method": "POST", "route": "/predict", "status": "2xx"}
    assert value(text, "mloop_http_requests_total", **ok) == 1
    assert feedback["accepted"] == 1, "the batch's rows are in the log"


def drift_after(
    server: Server, rows: list[dict[str, float]], feature: str, window_rows: int
) -> dict[str, float]:
    """Send rows, then wait for the housekeeping thread to publish the drift gauges."""
    with server.client() as client:
        assert client.post("/predict", json=rows).status_code == 200
        for _ in range(50):
            text = client.get("/metrics").text
            if value(text, "mloop_drift_window_rows") >= window_rows:
                break
            threading.Event().wait(0.1)
    return {name: value(text, "mloop_feature_drift_psi", feature=name) for name in ("age", feature)}


def test_drift_gauges_follow_the_inputs(tmp_path: Path) -> None:
    X, _, features = diabetes_rows()
    server = start_server(tmp_path, make_bundle(tmp_path / "champion", version="8"))
    try:
        natural = [dict(zip(features, map(float, row))) for row in X[100:150]]
        before = drift_after(server, natural, "bmi", window_rows=50)
        shifted = [dict(row, bmi=0.16) for row in natural]  # the top 1% of training BMIs
        after = drift_after(server, shifted, "bmi", window_rows=100)
    finally:
        stop_server(server)
    assert before["bmi"] < 0.5, before  # 50 rows from the training distribution: sampling noise
    assert after["bmi"] > 1.0 > after["age"], after  # only the shifted feature drifts


def test_multiprocess_workers_are_aggregated(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "champion", version="5")
    multiproc = tmp_path / "prom-multi"
    multiproc.mkdir()
    (multiproc / "counter_99999.db").write_bytes(b"stale file from an earlier run")
    server = start_server(tmp_path, bundle, workers=2, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    try:
        assert not (
            multiproc / "counter_99999.db"
        ).exists(), "multiprocess dir not cleaned at start"
        with server.client() as client:
            for _ in range(40):  # new connections spread over both workers
                with server.client() as one_shot:
                    assert one_shot.post("/predict", json=valid_record()).status_code == 200
            # Each worker folds its samples into its file on its housekeeping tick (every second),
            # so the other worker's requests reach a scrape within about a second.
            assert wait_until(
                lambda: value(client.get("/metrics").text, "mloop_predictions_total",
                              model_version="5") == 40,
                timeout=10, interval=0.2,
            ), "timed out waiting for both workers' predictions in /metrics"  # fmt: skip
            scrapes = [client.get("/metrics").text for _ in range(6)]
        for text in scrapes:  # whichever worker answers, it reports every worker's counts
            assert value(text, "mloop_predictions_total", model_version="5") == 40
            requests = value(
                text, "mloop_http_requests_total", method="POST", route="/predict", status="2xx"
            )
            assert requests == 40
        pids = {p.name.split("_")[-1] for p in multiproc.glob("*.db")}
        assert len(pids) >= 2, f"expected files from two workers, got {pids}"
    finally:
        stop_server(server)
    # Each worker has its own log writer process; both write to the same SQLite file.
    with sqlite3.connect(tmp_path / "predictions.db") as connection:
        (logged,) = connection.execute("SELECT COUNT(DISTINCT id) FROM predictions").fetchone()
    assert logged == 40


def serving_workers(multiproc: Path) -> set[int]:
    """Workers that have loaded a model: model_info (livemax) is first written at the load."""
    return {int(p.stem.split("_")[-1]) for p in multiproc.glob("gauge_livemax_*.db")}


def files_of(multiproc: Path, pid: int) -> list[str]:
    return [p.name for p in multiproc.glob(f"gauge_live*_{pid}.db")]


def wait_for(condition: Callable[[], object], what: str) -> None:
    assert wait_until(condition, timeout=30, interval=0.2), f"timed out waiting for {what}"


def test_gauges_follow_live_workers_through_a_crash_and_a_reload(tmp_path: Path) -> None:
    """A killed worker's gauges leave the aggregate, and a replaced model version reads 0.

    Without live gauge modes and the dead-worker sweep, the crashed worker's file kept reporting
    the old version and its older load time; without retiring the old label set, version 1 kept
    reading 1 after every worker served version 2 (prometheus-client cannot remove a series in
    multiprocess mode).
    """
    bundle = make_bundle(tmp_path / "champion", version="1")
    multiproc = tmp_path / "prom-multi"
    server = start_server(tmp_path, bundle, workers=2, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    try:
        wait_for(lambda: len(serving_workers(multiproc)) == 2, "two workers serving")
        victim = min(serving_workers(multiproc))
        os.kill(victim, signal.SIGKILL)
        # uvicorn's supervisor starts a replacement; the survivors sweep the dead one's files.
        wait_for(lambda: not files_of(multiproc, victim), "the dead worker's gauge files to go")
        wait_for(lambda: len(serving_workers(multiproc)) == 2, "a replacement worker serving")
        swapped_at = time.time()
        make_bundle(tmp_path / "champion", version="2")  # published in place, atomically

        def both_serve_v2() -> bool:
            with server.client() as client:
                text = client.get("/metrics").text
            info = {
                dict(labels)["version"]: v
                for (name, labels), v in samples(text).items()
                if name == "mloop_model_info"
            }
            return info.get("2") == 1 and info.get("1", 0) == 0

        wait_for(both_serve_v2, "model_info to show version 2 only")
        with server.client() as client:
            text = client.get("/metrics").text
        assert value(text, "mloop_model_loaded_timestamp_seconds") >= swapped_at - 1
        assert value(text, "mloop_model_reloads_total", result="success") >= 3
    finally:
        stop_server(server)
    assert "not been implemented in  multi-process mode" not in server.output()
    assert f"worker {victim} is gone" in server.output()
