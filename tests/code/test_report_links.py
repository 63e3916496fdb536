"""MLflow run links in the model review, against a real `mlflow server`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mloop.report.results import mlflow_run_links
from tests.helpers.net import free_port
from tests.helpers.servers import start_process, stop_server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("mlflow")
    port, log = free_port(), tmp / "mlflow.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = start_process(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
         "--artifacts-destination", str(tmp / "artifacts")],
        port, log, "/health", env=env, what="mlflow server",
    )  # fmt: skip
    yield server.url
    stop_server(server)


def test_links_point_at_each_runs_page(mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.create_experiment("mloop-links")
    run = client.create_run(experiment).info.run_id
    links = mlflow_run_links({"forest": run, "gone": "0" * 32}, mlflow_server)
    assert links == {"forest": f"{mlflow_server}/#/experiments/{experiment}/runs/{run}"}
    page = httpx.get(mlflow_server + "/", timeout=10)  # the UI the fragment is routed in
    assert page.status_code == 200 and "<html" in page.text.lower()
    # the REST API agrees that the run lives in that experiment
    answer = httpx.get(f"{mlflow_server}/api/2.0/mlflow/runs/get", params={"run_id": run})
    assert answer.json()["run"]["info"]["experiment_id"] == experiment


def test_no_links_without_a_tracking_server(tmp_path: Path) -> None:
    assert mlflow_run_links({"forest": "abc"}, f"sqlite:///{tmp_path / 'mlflow.db'}") == {}
