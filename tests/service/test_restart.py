"""The prediction log outlives the process: predictions made before a restart take feedback after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from mloop.config import load_schema
from mloop.ingest import read_extra_rows
from mloop.validate import check
from tests.service.service_fixtures import (
    DIABETES_SCHEMA,
    make_bundle,
    start_server,
    stop_server,
    valid_record,
)


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
            )
        assert response.json() == {"accepted": 3, "unknown_ids": []}
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
