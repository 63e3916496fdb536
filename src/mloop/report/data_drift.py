"""Drift of a run's data against the champion's training data, before the run replaces it.

Runs in the data job, after validate and before prepare, while ``models/champion`` is still the
target branch's champion: its ``reference_stats.json`` is the training data the served model saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mloop.config import DatasetSchema
from mloop.drift import build_drift_report
from mloop.encoding import encoded_frame
from mloop.fileio import read_json, write_json
from mloop.report.results import DRIFT_HTML, DRIFT_JSON

REFERENCE_FILE = "reference_stats.json"  # mloop.bundle's names: importing it loads model runtimes
META_FILE = "bundle.json"


def measure(data: Path, schema: DatasetSchema, champion_dir: Path, out: Path) -> dict[str, Any]:
    """Write ``out/drift.json`` (and ``drift.html``, Evidently's report) and return the summary.

    Without a champion (the first run, or one not pulled from the DVC remote) the summary says
    so and why: the report shows it instead of a drift verdict.
    """
    out.mkdir(parents=True, exist_ok=True)
    reference_path = champion_dir / REFERENCE_FILE
    if not reference_path.exists():
        document: dict[str, Any] = {
            "status": "skipped",
            "reason": f"no champion bundle in {champion_dir} (a first run, or not pulled)",
        }
        write_json(out / DRIFT_JSON, document)
        return document
    reference = read_json(reference_path)
    meta = read_json(champion_dir / META_FILE) if (champion_dir / META_FILE).exists() else {}
    features = [name for name in schema.features if name in reference.get("features", {})]
    new = [name for name in schema.features if name not in features]
    if not features:
        document = {"status": "skipped", "reason": "the champion shares no feature with this run"}
        write_json(out / DRIFT_JSON, document)
        return document
    frame = pd.read_csv(data)
    current = encoded_frame(frame, schema)
    summary = build_drift_report(current, reference, features, html_path=out / DRIFT_HTML)
    document = {
        "status": "measured",
        "data": str(data),
        "champion_version": meta.get("version"),
        "features_new_in_this_run": new,
        **summary,
    }
    write_json(out / DRIFT_JSON, document)
    return document
