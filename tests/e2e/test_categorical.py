"""A dataset with a text (category) feature, by configuration only: validated, learnt, served."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_diabetes

from mloop.models.store import load_predictor, read_meta
from tests.e2e.conftest import dvc, dvc_repro
from tests.helpers.servers import start_server, stop_server

pytestmark = pytest.mark.slow

CLINICS = ["north", "south", "east"]
EFFECT = {"north": 60.0, "south": -60.0, "east": 0.0}  # what the clinic adds to the target


def clinic_csv(path: Path, seed: int = 3) -> pd.DataFrame:
    """Diabetes with a ``clinic`` column (text, 4% missing) that moves the target by +-60."""
    frame = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(seed)
    clinic = rng.choice(CLINICS, size=len(frame))
    frame["target"] = (frame["target"] + [EFFECT[c] for c in clinic]).clip(0, 400)
    frame.insert(2, "clinic", clinic)
    frame.loc[rng.random(len(frame)) < 0.04, "clinic"] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def use_clinic_schema(repo: Path) -> None:
    schema_path = repo / "datasets/diabetes.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["source"] = {"kind": "path", "path": "data/external/clinics.csv"}
    columns = dict(schema["columns"])
    schema["columns"] = {
        **{k: columns[k] for k in ("age", "sex")},
        "clinic": {"dtype": "category", "allowed": CLINICS, "nullable": True},
        **{k: v for k, v in columns.items() if k not in ("age", "sex")},
    }
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))


def test_a_category_feature_is_learnt_exported_and_served(
    make_repo: Callable[[str], Path], tmp_path: Path
) -> None:
    repo = make_repo("categorical")
    clinic_csv(repo / "data/external/clinics.csv")
    use_clinic_schema(repo)
    dvc_repro(repo)

    metrics = json.loads((repo / "reports/metrics.json").read_text())["candidates"]
    assert len(metrics) == 6 and all(np.isfinite(m["rmse"]) for m in metrics.values())
    # The linear model sees one column per clinic, so it learns the +-60 (no ordinal guess).
    assert metrics["elasticnet"]["rmse"] < 0.8 * metrics["baseline"]["rmse"]
    reference = json.loads((repo / "data/prepared/reference_stats.json").read_text())
    clinic = reference["features"]["clinic"]
    assert clinic["kind"] == "categorical" and clinic["labels"] == CLINICS
    assert clinic["categories"] == [0.0, 1.0, 2.0] and 0.0 < clinic["missing"] < 0.1
    assert read_meta(repo / "models/candidates/keras_mlp")["categories"][2] == 3
    # One-hot (linear), imputers per column kind (forests): each still exports to ONNX.
    for name in ("elasticnet", "random_forest", "extra_trees"):
        assert read_meta(repo / "models/candidates" / name)["serving"] == "onnx", name

    test = pd.read_parquet(repo / "data/prepared/test.parquet")
    assert set(test["clinic"].dropna()) <= set(CLINICS)
    row = test.drop(columns="target").iloc[0].to_dict()
    row = {k: (None if pd.isna(v) else v) for k, v in row.items()}
    served = load_predictor(repo / "models/candidates/elasticnet")
    base = {**row, "clinic": "east"}
    as_codes = np.array(
        [[CLINICS.index(c) if k == "clinic" else base[k] for k in base] for c in CLINICS],
        dtype=float,
    )
    north, south, east = served.predict(as_codes)
    assert north - east > 30 and east - south > 30, (north, south, east)

    server = start_server(tmp_path, repo / "models/champion")
    try:
        with server.client() as client:
            answers = [client.post("/predict", json={**row, "clinic": c}) for c in CLINICS]
            missing = client.post("/predict", json={**row, "clinic": None})
            unknown = client.post("/predict", json={**row, "clinic": "west"})
            as_number = client.post("/predict", json={**row, "clinic": 1})
            batch = client.post("/predict", json=[{**row, "clinic": c} for c in CLINICS])
            openapi = client.get("/openapi.json").json()
    finally:
        stop_server(server)
    assert [a.status_code for a in answers] == [200, 200, 200] and missing.status_code == 200
    singles = [a.json()["prediction"] for a in answers]
    assert batch.json()["predictions"] == pytest.approx(singles)
    assert len(set(singles)) > 1, "the clinic changes the answer"
    for refused in (unknown, as_number):
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", "clinic"]
    body = openapi["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    field = body["schema"]["anyOf"][0]["properties"]["clinic"]
    assert CLINICS == next(part["enum"] for part in field["anyOf"] if "enum" in part)


def test_a_value_outside_the_categories_fails_validate(
    make_repo: Callable[[str], Path],
) -> None:
    repo = make_repo("categorical-bad")
    frame = clinic_csv(repo / "data/external/clinics.csv")
    frame.loc[[5, 9], "clinic"] = "West"
    frame.to_csv(repo / "data/external/clinics.csv", index=False)
    use_clinic_schema(repo)
    result = dvc(repo, "repro", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "column 'clinic': isin" in output and "row 5: West" in output, output[-3000:]
