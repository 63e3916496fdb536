"""The prediction log outlives the process: predictions made before a restart take feedback after it,
and a writer process that dies is reported and replaced."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

from mloop.config import load_schema
from mloop.ingest import read_extra_rows
from mloop.validate import check
from tests.helpers.bundles import make_bundle, valid_record
from tests.helpers.paths import DIABETES_SCHEMA
from tests.helpers.servers import FEEDBACK_AUTH, start_server, stop_server


def test_log_survives_a_restart_and_exports_for_ingest(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "champion", version="1")
    first = start_server(tmp_path, bundle)
    try:
        with first.client() as client:
            ids = client.post("/predict", json=[valid_record()] * 3).json()["ids"]
    finally:
        stop_server(first)  # SIGTERM: the lifespan shutdown flushes the queue

    second = start_server(tmp_path, bundle)  # same MLOOP_PREDICTION_LOG_URL
    try:
        with second.client() as client:
            response = client.post(
                "/feedback",
                json={"items": [{"id": i, "actual": 100.0 + n} for n, i in enumerate(ids)]},
                headers=FEEDBACK_AUTH,
            )
        assert response.json()["accepted"] == 3
    finally:
        stop_server(second)

    export = tmp_path / "feedback" / "export.parquet"
    result = subprocess.run(
        [
            sys.executable, "-m", "service.prediction_log", "export",
            "--db", f"sqlite:///{tmp_path / 'predictions.db'}",
            "--bundle", str(bundle), "--out", str(export),
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    schema = load_schema(DIABETES_SCHEMA)
    rows, _ = read_extra_rows(export.parent, list(schema.columns))
    typed, violations = check(rows, schema)
    assert violations == []
    assert sorted(typed["target"]) == [100.0, 101.0, 102.0]
    expected = pd.Series(valid_record())
    assert (typed[schema.features].iloc[0] - expected).abs().max() < 1e-12


def writer_process(server_pid: int) -> psutil.Process:
    """The prediction log's writer: the server's child started by multiprocessing's spawn."""
    children = psutil.Process(server_pid).children(recursive=True)
    writers = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
    assert len(writers) == 1, [c.cmdline() for c in children]
    return writers[0]


def test_a_dead_log_writer_is_reported_and_restarted(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "champion", version="1")
    server = start_server(tmp_path, bundle)
    try:
        first = writer_process(server.process.pid)
        first.kill()
        first.wait(5)
        seen: set[str] = set()
        with server.client() as client:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and seen != {"down", "ok"}:
                ready = client.get("/ready")
                assert ready.status_code == 200, "predictions are served with the log down"
                seen.add(ready.json()["prediction_log"])
                if "down" not in seen:
                    text = client.get("/metrics").text
                    if "mloop_prediction_log_writer_up 0.0" in text:
                        seen.add("down")
                time.sleep(0.05)
            assert seen == {"down", "ok"}, seen
            assert writer_process(server.process.pid).pid != first.pid
            answer = client.post("/predict", json=valid_record()).json()
            labelled = client.post(
                "/feedback",
                json={"items": [{"id": answer["id"], "actual": 100.0}]},
                headers=FEEDBACK_AUTH,
            )
            time.sleep(0.5)  # a housekeeping tick publishes the writer's state
            text = client.get("/metrics").text
    finally:
        stop_server(server)
    assert labelled.json()["accepted"] == 1, "the new writer logs predictions again"
    assert "mloop_prediction_log_writer_restarts_total 1.0" in text
    assert "mloop_prediction_log_writer_up 1.0" in text
