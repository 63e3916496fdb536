"""A pipeline run's results as the report reads them: the stage outputs, and diffs against a git rev.

Every number in the report comes from these files (``reports/*.json``, the candidates' manifest,
the drift summary) or from ``dvc metrics diff`` / ``dvc params diff``: nothing is recomputed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.config import Config, load_config, metric_is_lower_better
from mloop.errors import StageError
from mloop.fileio import read_json

DRIFT_JSON = "drift.json"
DRIFT_HTML = "drift.html"


@dataclass
class Diff:
    """``dvc metrics|params diff --json`` against ``rev``: rows of (path, key, old, new, change).

    ``error`` says why there is no diff (no such rev, a shallow clone): the report shows it.
    """

    rev: str
    rows: list[tuple[str, str, Any, Any, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class RunResults:
    """The outputs of one ``dvc repro`` (paths from params.yaml), loaded and checked."""

    config: Config
    metrics: dict[str, Any]
    latency: dict[str, Any]
    promotion: dict[str, Any]
    validation: dict[str, Any]
    candidates: dict[str, Any]
    raw_manifest: dict[str, Any]
    drift: dict[str, Any] | None
    drift_html: Path | None

    @property
    def metric(self) -> str:
        return str(self.promotion["metric"])

    @property
    def lower_is_better(self) -> bool:
        return metric_is_lower_better(self.metric)

    @property
    def challenger(self) -> str | None:
        challenger = self.promotion.get("challenger")
        return str(challenger["name"]) if challenger else None


def _load(path: Path, what: str) -> dict[str, Any]:
    try:
        document = read_json(path)
    except FileNotFoundError:
        raise StageError(f"{path} missing ({what}): run `dvc repro` first") from None
    except (OSError, ValueError) as exc:
        raise StageError(f"{path} unreadable ({what}): {exc}") from None
    if not isinstance(document, dict):
        raise StageError(f"{path}: expected a JSON object ({what})")
    return document


def load_results(params_file: Path, drift_dir: Path | None) -> RunResults:
    """Read the run's reports; StageError names the first missing or unreadable file."""
    config = load_config(params_file)
    paths = config.params.paths
    drift = drift_html = None
    if drift_dir is not None and (drift_dir / DRIFT_JSON).exists():
        drift = _load(drift_dir / DRIFT_JSON, "drift summary")
        html = drift_dir / DRIFT_HTML
        drift_html = html if html.exists() else None
    return RunResults(
        config=config,
        metrics=_load(paths.metrics, "evaluate's metrics"),
        latency=_load(paths.latency, "evaluate's latency"),
        promotion=_load(paths.promotion_report, "promote's decision"),
        validation=_load(paths.validation_report, "validate's report"),
        candidates=_load(paths.candidates_dir / "manifest.json", "train's manifest"),
        raw_manifest=_load(paths.raw_manifest, "ingest's manifest"),
        drift=drift,
        drift_html=drift_html,
    )


def dvc_diff(kind: str, rev: str, cwd: Path) -> Diff:
    """``dvc <kind> diff --json <rev>`` (kind: metrics or params) as rows, or the reason it failed."""
    command = [sys.executable, "-m", "dvc", kind, "diff", "--json", rev]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    try:
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Diff(rev, error=f"dvc {kind} diff could not run: {exc}")
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return Diff(
            rev, error=lines[-1] if lines else f"dvc {kind} diff exited {result.returncode}"
        )
    try:
        document = json.loads(result.stdout or "{}")
    except ValueError as exc:
        return Diff(rev, error=f"dvc {kind} diff printed no JSON: {exc}")
    rows = []
    for path, entries in sorted(document.items()):
        for key, values in sorted(entries.items()):
            rows.append((path, key, values.get("old"), values.get("new"), values.get("diff")))
    return Diff(rev, rows)


def mlflow_run_links(run_ids: dict[str, str], tracking_uri: str) -> dict[str, str]:
    """Links to each run in the MLflow UI, when the tracking URI is a server (else none).

    The UI addresses a run by its experiment id too, so the server is asked for it; an unreachable
    server gives no links rather than a failed report.
    """
    if not tracking_uri.startswith(("http://", "https://")) or not run_ids:
        return {}
    from mlflow.tracking import MlflowClient

    os.environ.setdefault(
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"
    )  # a report waits seconds, not minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    base = tracking_uri.rstrip("/")
    client = MlflowClient(tracking_uri)
    links = {}
    for name, run_id in run_ids.items():
        try:
            experiment = client.get_run(run_id).info.experiment_id
        except Exception:  # noqa: BLE001 - a missing run or server is a missing link, not a failure
            continue
        links[name] = f"{base}/#/experiments/{experiment}/runs/{run_id}"
    return links
