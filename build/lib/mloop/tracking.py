"""MLflow set-up and lineage: every run can be traced to its code (git commit) and data (DVC hash)."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from mloop.config import Config
from mloop.errors import StageError
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

    uri = tracking_uri(config)
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        relocate_store(uri, config.params.tracking.artifact_location.resolve())
    mlflow.set_tracking_uri(uri)
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


def relocate_store(uri: str, artifact_root: Path) -> list[str]:
    """Make a copied checkout's embedded store use its own artifact folder; returns the roots moved.

    MLflow records absolute artifact paths, so a store copied with its checkout (``cp -r``, a
    runner's cache, a container image) would still read and write the original's ``mlruns/``.
    Where the store's experiments name another folder of the same name as this checkout's
    artifact root, every recorded path under it is rewritten to this one, once. Hand-written, in
    SQL, because MLflow has no API to move an artifact root; only paths under the old root change.
    """
    if not uri.startswith("sqlite:///"):
        return []
    database = Path(uri.removeprefix("sqlite:///"))
    if not database.is_file():
        return []
    with sqlite3.connect(database) as connection:
        if not connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='experiments'"
        ).fetchone():
            return []
        roots = set()
        for (location,) in connection.execute("SELECT artifact_location FROM experiments"):
            path = Path(str(location).removeprefix("file://"))
            for candidate in (path, path.parent):
                if candidate.name == artifact_root.name and candidate != artifact_root:
                    roots.add(candidate)
        if not roots:
            return []
        if not artifact_root.is_dir():
            raise StageError(
                f"{database} records artifacts in {', '.join(map(str, sorted(roots)))}, and "
                f"{artifact_root} does not exist: copy mlruns/ along with mlflow.db, or remove "
                "mlflow.db to start a new store here"
            )
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            columns = [
                row[1]
                for row in connection.execute(f'PRAGMA table_info("{table}")')
                if any(kind in str(row[2]).upper() for kind in ("CHAR", "TEXT", "CLOB"))
            ]
            for column in columns:
                for old in sorted(roots):
                    for prefix in (old.as_uri(), str(old)):
                        new = (
                            artifact_root.as_uri()
                            if prefix.startswith("file:")
                            else str(artifact_root)
                        )
                        connection.execute(
                            f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?) '
                            f'WHERE "{column}" = ? OR "{column}" LIKE ? ESCAPE \'\\\'',
                            (new, len(prefix) + 1, prefix, _like_prefix(prefix) + "/%"),
                        )
    return [str(root) for root in sorted(roots)]


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def git_commit(outputs: list[Path] | None = None) -> tuple[str, bool]:
    """The checked-out commit and whether tracked files differ from it ("unknown" outside git).

    Files the pipeline writes itself (``outputs``: its reports, pointers and ``dvc.lock``, which
    git tracks) do not count: a repro rewrites them before train asks, so they would make every
    run look dirty. Changed code, params or schemas do.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "-z", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    ignored = [Path("dvc.lock"), *(outputs or [])]
    changed = [Path(entry[3:]) for entry in status.split("\0") if len(entry) > 3]
    dirty = any(not any(p == o or o in p.parents for o in ignored) for p in changed)
    return commit, dirty


def lineage(config: Config) -> dict[str, Any]:
    """Code and data identity, logged on every run and copied into the champion bundle."""
    paths = config.params.paths
    outputs = [Path(value) for value in paths.model_dump().values()]
    commit, dirty = git_commit(outputs)
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
