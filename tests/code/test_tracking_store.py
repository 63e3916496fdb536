"""The embedded MLflow store moves with its checkout: a copy reads and writes its own mlruns/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers.paths import read_params

# Runs in the checkout (cwd), as a stage would: configure, then log, register and read back.
SCRIPT = """
import sys
from pathlib import Path
import mlflow
from mlflow.tracking import MlflowClient
from mloop.config import load_config
from mloop.tracking import configure
config = load_config(Path("params.yaml"))
configure(config)
client = MlflowClient()
if sys.argv[1] == "log":
    Path("note.txt").write_text("from " + str(Path.cwd()))
    with mlflow.start_run() as run:
        mlflow.log_artifact("note.txt")
    client.create_registered_model("mloop-note")
    client.create_model_version("mloop-note", run.info.artifact_uri + "/note.txt", run.info.run_id)
    print(run.info.run_id)
else:
    run_id = sys.argv[2]
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="note.txt")
    print(Path(local).read_text())
    with mlflow.start_run() as run:
        mlflow.log_artifact("params.yaml")
    print(run.info.artifact_uri)
    print(client.get_model_version("mloop-note", "1").source)
"""


def checkout(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(read_params()))
    (root / "script.py").write_text(SCRIPT)
    return root


def run(root: Path, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "script.py", *args], cwd=root, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()


def test_a_copied_checkout_uses_its_own_artifact_folder(tmp_path: Path) -> None:
    original = checkout(tmp_path / "original")
    (run_id,) = run(original, "log")[-1:]
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original / "mlruns")  # whatever the copy reads, it must not come from here

    note, artifact_uri, source = run(copy, "read", run_id)[-3:]
    assert note == f"from {original}", "the run's artifact, read from the copy's mlruns/"
    here = (str(copy / "mlruns"), (copy / "mlruns").as_uri())
    assert artifact_uri.startswith(here), artifact_uri
    assert source.startswith(here), source
    assert not (original / "mlruns").exists(), "nothing written into the original's folder"
