"""The request bodies, written once per run from the real data: the same values for everyone.

Its first row alone, and its rows tiled to 10,000; each in the format its server documents (records
by feature name for this service and bare ASGI, ``dataframe_split`` for MLflow), as floats (MLflow's
signature says double), compact JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from serving_bench.settings import BATCH_ROWS


@dataclass(frozen=True)
class Bodies:
    """Request bodies built from the real data: its first row, and its rows tiled to 10,000."""

    row: Path
    row_mlflow: Path
    batch: Path
    batch_mlflow: Path
    first_row: dict[str, float]


def write_bodies(workdir: Path, data: Path, features: list[str]) -> Bodies:
    """Every body from the same real rows, as floats (MLflow's signature says double), compact.

    The service takes records by feature name; MLflow takes ``dataframe_split``: each contender
    gets the request format it documents, carrying identical values.
    """
    import pandas as pd

    frame = pd.read_csv(data, sep=";")[features].astype(float)
    rows = frame.to_numpy().tolist()
    tiled = (rows * math.ceil(BATCH_ROWS / len(rows)))[:BATCH_ROWS]
    first = dict(zip(features, rows[0]))
    directory = workdir / "bodies"
    directory.mkdir(parents=True, exist_ok=True)
    bodies = Bodies(
        row=directory / "row.json",
        row_mlflow=directory / "row_mlflow.json",
        batch=directory / "batch.json",
        batch_mlflow=directory / "batch_mlflow.json",
        first_row=first,
    )
    compact = (",", ":")
    bodies.row.write_text(json.dumps(first, separators=compact))
    split = {"dataframe_split": {"columns": features, "data": [rows[0]]}}
    bodies.row_mlflow.write_text(json.dumps(split, separators=compact))
    records = [dict(zip(features, row)) for row in tiled]
    bodies.batch.write_text(json.dumps(records, separators=compact))
    split = {"dataframe_split": {"columns": features, "data": tiled}}
    bodies.batch_mlflow.write_text(json.dumps(split, separators=compact))
    return bodies
