"""python -m service.prediction_log drift-report: reference reconstruction and the Evidently report CLI on a real log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mloop.config import DatasetSchema
from mloop.reference import bin_counts, compute_reference
from mloop.drift import (
    REFERENCE_SAMPLE_SIZE,
    build_drift_report,
    reference_sample,
    snap_to_categories,
)
from service.prediction_log.__main__ import app
from tests.helpers.paths import DIABETES_SCHEMA
from tests.helpers.prediction_log import T0, RecordingLog

SHIFTED = ["bmi", "bp", "s5"]


@pytest.fixture(scope="module")
def plog_reference(diabetes_frame: pd.DataFrame, diabetes_schema: DatasetSchema) -> dict[str, Any]:
    return compute_reference(diabetes_frame, diabetes_schema, bins=10)


@pytest.fixture(scope="module")
def plog_bundle(tmp_path_factory: pytest.TempPathFactory, plog_reference: dict[str, Any]) -> Path:
    """The two bundle files the report reads (no model: the report never loads one)."""
    bundle = tmp_path_factory.mktemp("champion")
    shutil.copyfile(DIABETES_SCHEMA, bundle / "schema.yaml")
    (bundle / "reference_stats.json").write_text(json.dumps(plog_reference), encoding="utf-8")
    (bundle / "bundle.json").write_text(json.dumps({"version": "7"}), encoding="utf-8")
    return bundle


@pytest.fixture(scope="module")
def plog_logged_db(
    tmp_path_factory: pytest.TempPathFactory,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> str:
    """Day one: the training distribution. Day two: three features shifted by two std."""
    url = f"sqlite:///{tmp_path_factory.mktemp('log') / 'predictions.db'}"
    features = diabetes_schema.features
    # Written with 15 significant digits, as a CSV round trip would: categories must still match.
    same = diabetes_frame[features].map(lambda value: float(f"{value:.15g}"))
    assert not same["sex"].isin(diabetes_frame["sex"]).any()
    shifted = same.copy()
    shifted[SHIFTED] += 2 * same[SHIFTED].std()
    log = RecordingLog(url, flush_interval_s=0.01)
    log.start()
    for day, rows in enumerate((same, shifted)):
        ids = [f"d{day}-{i}" for i in range(len(rows))]
        outputs = np.zeros(len(rows))
        assert log.record("7", ids, rows.to_numpy(dtype=float), features, outputs, T0 + 86400 * day)
    assert log.close()
    return url


def test_reference_sample_reproduces_the_histograms(plog_reference: dict[str, Any]) -> None:
    for name, feature in plog_reference["features"].items():
        sample = reference_sample(feature, bins=plog_reference["bins"])
        assert len(sample) == REFERENCE_SAMPLE_SIZE
        np.testing.assert_array_equal(sample, reference_sample(feature, bins=10))  # deterministic
        shares = bin_counts(feature, sample) / REFERENCE_SAMPLE_SIZE
        expected = np.asarray(feature["proportions"], dtype=float)
        if feature["kind"] == "categorical":
            assert set(sample.tolist()) == set(feature["categories"])
            expected = np.append(expected, 0.0)  # no value outside the known categories
        else:
            assert feature["min"] <= sample.min() and sample.max() <= feature["max"], name
        expected = np.append(expected, 0.0)  # and none missing
        np.testing.assert_allclose(shares, expected, atol=1 / REFERENCE_SAMPLE_SIZE, err_msg=name)


def test_values_within_float_noise_snap_to_their_category() -> None:
    values = np.array([0.05068011873981862, 0.0506801187398186, -0.04464, 0.3])
    snapped = snap_to_categories(values, [-0.0446416365069891, 0.0506801187398186])
    assert snapped.tolist() == [0.0506801187398186, 0.0506801187398186, -0.04464, 0.3]


def run_report(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["drift-report", *args])
    return result.exit_code, result.output


def test_cli_reports_shifted_features_as_drifted(
    tmp_path: Path, plog_logged_db: str, plog_bundle: Path, diabetes_schema: DatasetSchema
) -> None:
    common = ["--db", plog_logged_db, "--bundle", str(plog_bundle)]

    code, output = run_report(
        *common, "--out", str(tmp_path / "same"), "--until", "2024-06-02T12:00"
    )
    assert code == 0, output
    same = json.loads((tmp_path / "same" / "drift.json").read_text(encoding="utf-8"))
    assert same["rows"] == 442
    assert same["window"] == {"since": None, "until": "2024-06-02T12:00:00+00:00"}
    assert same["bundle"]["model_version"] == "7"
    assert set(same["features"]) == set(diabetes_schema.features)
    assert same["share_drifted"] <= 0.2 and not same["dataset_drift"]
    assert not same["features"]["sex"]["drifted"]

    code, output = run_report(
        *common, "--out", str(tmp_path / "shifted"), "--since", "2024-06-02T12:00"
    )
    assert code == 0, output
    shifted = json.loads((tmp_path / "shifted" / "drift.json").read_text(encoding="utf-8"))
    assert shifted["rows"] == 442
    # The other features hold the very same values in both windows, so the same verdict.
    expected = set(SHIFTED) | set(same["drifted_features"])
    assert set(shifted["drifted_features"]) == expected
    assert f"{len(expected)}/10 feature(s) drifted" in output
    assert shifted["share_drifted"] == pytest.approx(len(expected) / 10)
    for name in SHIFTED:
        entry = shifted["features"][name]
        assert entry["drifted"] and entry["score"] > entry["threshold"]
        assert entry["score"] > same["features"][name]["score"]
    html = (tmp_path / "shifted" / "drift.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<html") or "<html" in html[:2000].lower()


def test_cli_fails_clearly_on_an_empty_window_or_missing_db(
    tmp_path: Path, plog_logged_db: str, plog_bundle: Path
) -> None:
    code, output = run_report(
        "--db", plog_logged_db, "--bundle", str(plog_bundle), "--out", str(tmp_path),
        "--since", "2030-01-01",
    )  # fmt: skip
    assert code == 1
    assert "no predictions logged" in output
    assert not (tmp_path / "drift.json").exists()

    code, output = run_report(
        "--db", f"sqlite:///{tmp_path / 'absent.db'}", "--bundle", str(plog_bundle)
    )
    assert code == 1
    assert "does not exist" in output


def test_build_drift_report_refuses_empty_data(
    plog_reference: dict[str, Any], diabetes_schema: DatasetSchema
) -> None:
    with pytest.raises(ValueError, match="no current rows"):
        build_drift_report(
            pd.DataFrame(columns=diabetes_schema.features), plog_reference, diabetes_schema.features
        )
