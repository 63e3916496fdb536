"""service.prediction_log, the export of labelled rows for a retrain, and its CLI, into the pipeline's real ingest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from mloop import bundle as mloop_bundle
from mloop.config import DatasetSchema
from mloop.ingest import read_extra_rows
from mloop.validate import check
from service.prediction_log import export as export_module
from service.prediction_log.export import export_labelled
from tests.helpers.paths import DIABETES_SCHEMA, REPO
from tests.helpers.prediction_log import T0, RecordingLog, record_rows


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trips_into_the_ingest_stage(
    suffix: str,
    tmp_path: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    features, target = diabetes_schema.features, diabetes_schema.target
    rows = diabetes_frame.iloc[:40]
    ids = record_rows(plog_log, rows, features, "e")
    record_rows(plog_log, diabetes_frame.iloc[40:50], features, "unlabelled-")
    labels = rows[target].tolist()
    assert plog_log.record_feedback(list(zip(ids, labels)), T0 + 1).accepted == ids

    feedback_dir = tmp_path / "data" / "feedback"
    out = feedback_dir / f"export-20240601T120000{suffix}"
    quarantine = tmp_path / "data" / "quarantine"
    result = export_labelled(plog_log, out, diabetes_schema, quarantine_dir=quarantine)
    assert (result.exported, result.quarantined) == (40, 0)
    assert not quarantine.exists(), "nothing to quarantine: no file"
    assert [p.name for p in feedback_dir.iterdir()] == [out.name], "no temp file left behind"

    frame, used = read_extra_rows(feedback_dir, list(diabetes_schema.columns))
    assert used == [str(out)]
    typed, violations = check(frame, diabetes_schema)
    assert violations == []
    expected = rows[list(diabetes_schema.columns)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        typed.reset_index(drop=True), expected, check_exact=suffix != ".csv"
    )

    empty = export_labelled(plog_log, tmp_path / "none.parquet", diabetes_schema, since=T0 + 10)
    assert empty.exported == 0 and not (tmp_path / "none.parquet").exists()


def test_export_quarantines_rows_that_violate_the_schema(
    tmp_path: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    # Labels stored by an older service (or features logged under the "flag" policy): one bad
    # row must not stop the retrain at validate, and must not vanish unreported either.
    features, target = diabetes_schema.features, diabetes_schema.target
    rows = diabetes_frame.iloc[:6]
    ids = record_rows(plog_log, rows, features, "q")
    labels: list[object] = rows[target].tolist()
    labels[1] = 5000.0  # out of the target's range [0, 400]
    labels[4] = "high"  # not a number
    assert plog_log.record_feedback(list(zip(ids, labels)), T0 + 1).accepted == ids
    feedback_dir, quarantine = tmp_path / "data" / "feedback", tmp_path / "data" / "quarantine"
    out = feedback_dir / "export.parquet"

    result = export_labelled(plog_log, out, diabetes_schema, quarantine_dir=quarantine)

    assert (result.exported, result.quarantined) == (4, 2)
    frame, _ = read_extra_rows(feedback_dir, list(diabetes_schema.columns))
    assert check(frame, diabetes_schema)[1] == [], "only valid rows reach ingest"
    assert len(frame) == 4
    rejected = pd.read_csv(quarantine / "export.rejected.csv")
    assert rejected["prediction_id"].tolist() == [ids[1], ids[4]]
    report = orjson.loads((quarantine / "export.report.json").read_bytes())
    assert report["quarantined"] == 2 and report["exported"] == 4
    reasons = {(v["column"], v["rule"]) for v in report["violations"]}
    assert ("target", "not a number") in reasons
    assert any(column == "target" and "less_than_or_equal_to" in rule for column, rule in reasons)


def test_export_casts_integer_columns_per_schema(plog_log: RecordingLog, tmp_path: Path) -> None:
    schema = DatasetSchema.model_validate(
        {
            "name": "counts",
            "task": "classification",
            "source": {"kind": "path", "path": "x.csv"},
            "target": "label",
            "columns": {
                "rooms": {"dtype": "int"},
                "area": {"dtype": "float"},
                "label": {"dtype": "int"},
            },
        }
    )
    features = np.array([[3.0, 70.5], [1.0, 20.0]])
    assert plog_log.record("1", ["i1", "i2"], features, ["rooms", "area"], np.array([1, 0]), T0)
    plog_log.record_feedback([("i1", 1), ("i2", 0.0)], T0)
    assert export_labelled(plog_log, tmp_path / "rows.csv", schema).exported == 2
    frame = pd.read_csv(tmp_path / "rows.csv")
    assert list(frame.columns) == ["rooms", "area", "label"]
    assert frame.dtypes.astype(str).tolist() == ["int64", "float64", "int64"]
    assert frame.values.tolist() == [[3, 70.5, 1], [1, 20.0, 0]]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.prediction_log", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def schema_only_bundle(tmp_path: Path) -> Path:
    """What the export reads of a champion bundle: its schema (the diabetes one)."""
    bundle = tmp_path / "champion"
    bundle.mkdir()
    (bundle / "schema.yaml").write_text(
        DIABETES_SCHEMA.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return bundle


def test_export_cli(
    tmp_path: Path,
    plog_db: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    bundle = schema_only_bundle(tmp_path)
    ids = record_rows(
        plog_log, diabetes_frame.iloc[:6], diabetes_schema.features, "cli-"
    ) + record_rows(
        plog_log, diabetes_frame.iloc[6:10], diabetes_schema.features, "late-", T0 + 86400
    )
    plog_log.record_feedback([(i, 100.0) for i in ids], T0 + 90000)
    out = tmp_path / "feedback" / "export.parquet"
    db = f"sqlite:///{plog_db}"

    done = run_cli(
        "export", "--db", db, "--bundle", str(bundle), "--out", str(out), "--until", "2024-06-02"
    )
    assert done.returncode == 0, done.stderr
    assert "exported 6 labelled row(s)" in done.stdout
    assert len(pd.read_parquet(out)) == 6

    missing_db = run_cli(
        "export", "--db", f"sqlite:///{tmp_path / 'absent.db'}", "--bundle", str(bundle)
    )
    assert missing_db.returncode == 1
    assert "absent.db does not exist" in missing_db.stderr
    assert not (tmp_path / "absent.db").exists(), "a typo in --db must not create a database"

    missing_bundle = run_cli(
        "export", "--db", db, "--bundle", str(tmp_path / "nope"), "--out", str(out)
    )
    assert missing_bundle.returncode == 1
    assert "bundle directory" in missing_bundle.stderr and "does not exist" in missing_bundle.stderr


def test_bundle_file_names_match_mloop() -> None:
    for name in ("SCHEMA_FILE", "REFERENCE_FILE", "META_FILE"):
        assert getattr(export_module, name) == getattr(mloop_bundle, name)


def test_export_cli_hands_only_valid_rows_to_ingest(
    tmp_path: Path,
    plog_db: Path,
    plog_log: RecordingLog,
    diabetes_frame: pd.DataFrame,
    diabetes_schema: DatasetSchema,
) -> None:
    """The audit's case: one out-of-range label in the log made every later `dvc repro` stop."""
    bundle = schema_only_bundle(tmp_path)
    ids = record_rows(plog_log, diabetes_frame.iloc[:5], diabetes_schema.features, "v-")
    plog_log.record_feedback([(i, 500.0 if n == 2 else 100.0) for n, i in enumerate(ids)], T0)
    feedback_dir, quarantine = tmp_path / "data" / "feedback", tmp_path / "data" / "quarantine"
    done = run_cli(
        "export", "--db", f"sqlite:///{plog_db}", "--bundle", str(bundle),
        "--out", str(feedback_dir / "export.csv"), "--quarantine-dir", str(quarantine),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame, _ = read_extra_rows(feedback_dir, list(diabetes_schema.columns))
    assert len(frame) == 4 and check(frame, diabetes_schema)[1] == []
    assert "quarantined 1 row(s)" in done.stderr
    assert pd.read_csv(quarantine / "export.rejected.csv")["prediction_id"].tolist() == [ids[2]]


def test_export_writes_a_category_as_its_text(plog_log: RecordingLog, tmp_path: Path) -> None:
    """The log holds a category's code (the model's input); the exported row holds its text, and
    a code outside the list is quarantined, not guessed."""
    schema = DatasetSchema.model_validate(
        {
            "name": "colours",
            "task": "regression",
            "source": {"kind": "path", "path": "x.csv"},
            "target": "price",
            "columns": {
                "colour": {"dtype": "category", "allowed": ["red", "white"], "nullable": True},
                "area": {"dtype": "float"},
                "price": {"dtype": "float"},
            },
        }
    )
    features = np.array([[1.0, 70.5], [np.nan, 20.0], [0.0, 1.0], [7.0, 2.0]])
    ids = ["c1", "c2", "c3", "c4"]
    assert plog_log.record("1", ids, features, ["colour", "area"], np.zeros(4), T0)
    plog_log.record_feedback([(i, 9.5) for i in ids], T0)
    quarantine = tmp_path / "quarantine"
    result = export_labelled(plog_log, tmp_path / "rows.csv", schema, quarantine_dir=quarantine)
    assert (result.exported, result.quarantined) == (3, 1)
    frame = pd.read_csv(tmp_path / "rows.csv")
    assert frame["colour"].tolist()[0::2] == ["white", "red"] and pd.isna(frame["colour"][1])
    assert check(frame, schema)[1] == []
    report = orjson.loads((quarantine / "rows.report.json").read_bytes())
    assert report["violations"][0]["column"] == "colour"
    assert report["violations"][0]["rule"] == "not a category code"
