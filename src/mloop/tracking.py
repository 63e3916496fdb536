"""MLflow set-up and lineage: every run can be traced to its code (git commit) and data (DVC hash)."""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

from mloop.config import Config
from mloop.fileio import file_digest

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# The pipeline is offline-first: MLflow's usage telemetry would only time out (opt back in with false).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri(config: Config) -> str:
    """``MLFLOW_TRACKING_URI`` wins (a team server); otherwise the embedded SQLite store in params."""
    return os.environ.get("MLFLOW_TRACKING_URI") or config.params.tracking.tracking_uri


def configure(config: Config) -> str:
    """Point MLflow at the store and make sure the dataset's experiment exists; return its id."""
    import mlflow

    # MLflow's and Alembic's INFO lines ("Creating initial MLflow database tables...", "Created
    # version '1'") repeat what the stages print themselves.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    mlflow.set_tracking_uri(tracking_uri(config))
    name = config.experiment_name
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return str(experiment.experiment_id)
    location = config.params.tracking.artifact_location
    artifact_uri = None if os.environ.get("MLFLOW_TRACKING_URI") else location.resolve().as_uri()
    experiment_id = mlflow.create_experiment(name, artifact_location=artifact_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def git_commit() -> tuple[str, bool]:
    """The checked-out commit and whether the work tree differs from it ("unknown" outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, dirty


def lineage(config: Config) -> dict[str, Any]:
    """Code and data identity, logged on every run and copied into the champion bundle."""
    commit, dirty = git_commit()
    paths = config.params.paths
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "dataset": config.schema.name,
        "data_md5": file_digest(paths.raw_data),
        "train_md5": file_digest(paths.train_data),
        "test_md5": file_digest(paths.test_data),
        "params_md5": file_digest(config.params_file),
    }


def lineage_tags(info: dict[str, Any]) -> dict[str, str]:
    return {f"mloop.{key}": str(value) for key, value in info.items()}


def run_name(candidate: str, info: dict[str, Any]) -> str:
    return f"{candidate}@{str(info['git_commit'])[:8]}"
