"""Real champion bundles and real server processes for the service tests (no mocks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from mloop import sources
from mloop.bundle import write_bundle
from mloop.config import CandidateSpec, load_schema
from mloop.models import build_candidate
from mloop.models.store import export_onnx, save_native
from mloop.reference import compute_reference

REPO = Path(__file__).resolve().parents[2]
DIABETES_SCHEMA = REPO / "datasets/diabetes.yaml"
IRIS_SCHEMA = REPO / "datasets/iris.yaml"
ADMIN_TOKEN = "test-token-" + "x" * 8
FEEDBACK_TOKEN = "feedback-token-" + "y" * 8
FEEDBACK_AUTH = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}


def diabetes_rows() -> tuple[np.ndarray, np.ndarray, list[str]]:
    frame = load_diabetes(as_frame=True).frame
    schema = load_schema(DIABETES_SCHEMA)
    return frame[schema.features].to_numpy(), frame["target"].to_numpy(), schema.features


def make_bundle(
    destination: Path,
    version: str,
    kind: str = "linear",
    hyperparameters: dict[str, Any] | None = None,
    target_offset: float = 0.0,
    schema_file: Path = DIABETES_SCHEMA,
    latency: dict[str, Any] | None = None,
) -> Path:
    """Train a small model and publish it as a champion bundle with mloop's own writer.

    Any schema with a bundled source (diabetes, iris, ...)."""
    schema = load_schema(schema_file)
    assert schema.source.name is not None, "a bundled source"
    frame = sources.BUNDLED[schema.source.name]()
    X, y = frame[schema.features].to_numpy(), frame[schema.target].to_numpy()
    if schema.task == "regression":
        y = y + target_offset
    settings = {schema.task: hyperparameters or {}}
    spec = CandidateSpec(kind=kind, **settings)  # type: ignore[arg-type]
    estimator = build_candidate(spec, schema.task, seed=0).fit(X, y)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "model"
        save_native(estimator, model_dir, schema.task, schema.features)
        served, _ = export_onnx(estimator, X, model_dir, atol=1e-5, rtol=1e-5)
        reference = Path(scratch) / "reference_stats.json"
        frame = frame.assign(**{schema.target: y})
        reference.write_text(json.dumps(compute_reference(frame, schema, 10)))
        write_bundle(
            destination,
            model_dir=model_dir,
            schema_file=schema_file,
            reference_file=reference,
            meta={
                "registered_model": f"mloop-{schema.name}",
                "version": version,
                "candidate": kind,
                "kind": kind,
                "serving": "onnx" if served else "native",
                "task": schema.task,
                "target": schema.target,
                "features": schema.features,
                "metrics": {"rmse": 1.0} if schema.task == "regression" else {"f1": 0.9},
                "trained_at": "2026-01-01T00:00:00+00:00",
                "promoted_at": "2026-01-01T00:00:00+00:00",
                "git_commit": "0" * 40,
                "data_md5": "0" * 32,
                **({"latency": latency} if latency is not None else {}),
            },
        )
    return destination


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


def start_server(
    tmp: Path, bundle: Path, workers: int = 1, ready: bool = True, **env_overrides: str
) -> Server:
    """A real ``python -m service`` process; returns once /ready is 200 (``ready``) or, without
    ``ready``, once it answers at all (/health)."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "MLOOP_BUNDLE_DIR": str(bundle),
            "MLOOP_PREDICTION_LOG_URL": f"sqlite:///{tmp / 'predictions.db'}",
            "MLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
            "MLOOP_FEEDBACK_TOKEN": FEEDBACK_TOKEN,
            "MLOOP_WATCH_INTERVAL_S": "0.2",
            "MLOOP_HOUSEKEEPING_INTERVAL_S": "0.2",
            "MLOOP_MAX_BATCH_ROWS": "50",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / f"prom-{port}") if workers > 1 else "",
            **env_overrides,
        }
    )
    if not env["PROMETHEUS_MULTIPROC_DIR"]:
        env.pop("PROMETHEUS_MULTIPROC_DIR")
    log_path = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port), "--workers", str(workers)],
        cwd=REPO,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}", process, env, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}:\n{server.output()}")
        try:
            path = "/ready" if ready else "/health"
            if httpx.get(f"{server.url}{path}", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server not ready in 60 s:\n{server.output()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def bundle_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "champion", version="1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bundle_v1: Path) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("server"), bundle_v1)
    yield running
    stop_server(running)


def valid_record() -> dict[str, float]:
    X, _, features = diabetes_rows()
    return {name: float(value) for name, value in zip(features, X[0])}
