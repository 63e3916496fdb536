"""Real champion bundles, trained on a bundled dataset and written with mloop's own writer."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_diabetes

from mloop import sources
from mloop.bundle import write_bundle
from mloop.config import CandidateSpec, load_schema
from mloop.models import build_candidate
from mloop.models.store import export_onnx, save_native
from mloop.reference import compute_reference
from tests.helpers.paths import DIABETES_SCHEMA


def diabetes_rows() -> tuple[np.ndarray, np.ndarray, list[str]]:
    frame = load_diabetes(as_frame=True).frame
    schema = load_schema(DIABETES_SCHEMA)
    return frame[schema.features].to_numpy(), frame["target"].to_numpy(), schema.features


def valid_record() -> dict[str, float]:
    X, _, features = diabetes_rows()
    return {name: float(value) for name, value in zip(features, X[0])}


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
    spec = CandidateSpec(kind=kind, **settings)
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
