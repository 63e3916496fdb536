"""The running service needs only the `serve` dependency group: it imports no training library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.deploy.test_compose_and_images import TRAINING_ONLY
from tests.helpers.paths import REPO

PROBE = """
import json, sys
from fastapi.testclient import TestClient
from service.api.app import create_app
with TestClient(create_app()) as client:
    assert client.get("/ready").status_code == 200
    row = {name: 0.01 for name in client.get("/model").json()["features"]}
    assert client.post("/predict", json=row).status_code == 200
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_serving_a_model_imports_no_training_library(bundle_v1: Path, tmp_path: Path) -> None:
    env = {"MLOOP_BUNDLE_DIR": str(bundle_v1), "PATH": "/usr/bin:/bin",
           "MLOOP_PREDICTION_LOG_URL": f"sqlite:///{tmp_path / 'log.db'}",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert not loaded & set(TRAINING_ONLY), sorted(loaded & set(TRAINING_ONLY))
