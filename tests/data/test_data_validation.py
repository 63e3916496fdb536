"""The validate stage on the diabetes schema: every kind of bad raw file is refused and reported.

Each case writes a raw CSV where params.yaml (redirected into tmp_path) says the raw data lives,
runs ``mloop.validate.run`` and checks both the raised message and the JSON report it leaves.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloop import schema_checks, validate
from mloop.config import Config
from mloop.errors import DataValidationError


def write_raw(config: Config, content: pd.DataFrame | bytes) -> Path:
    path = config.params.paths.raw_data
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content.to_csv(path, index=False)
    return path


def read_report(config: Config) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(
        config.params.paths.validation_report.read_text(encoding="utf-8")
    )
    return report


def run_failing(config: Config, content: pd.DataFrame | bytes) -> tuple[str, dict[str, Any]]:
    """Run the stage on content that must be refused; return the error message and the report."""
    write_raw(config, content)
    with pytest.raises(DataValidationError) as excinfo:
        validate.run(config)
    report = read_report(config)
    assert report["valid"] is False
    assert report["dataset"] == "diabetes"
    assert report["violations"], "a refused file must list its violations"
    assert report["violation_count"] == sum(v["count"] for v in report["violations"])
    for violation in report["violations"]:
        assert set(violation) == {"column", "rule", "count", "examples"}
        assert violation["count"] >= 1
        assert 1 <= len(violation["examples"]) <= schema_checks.MAX_EXAMPLES
    return str(excinfo.value), report


def violation(report: dict[str, Any], column: str, rule_prefix: str) -> dict[str, Any]:
    matches = [
        v
        for v in report["violations"]
        if v["column"] == column and v["rule"].startswith(rule_prefix)
    ]
    assert len(matches) == 1, f"no single {rule_prefix} violation on {column}: {report}"
    return matches[0]


# ------------------------------------------------------------------------------------ valid data


def test_valid_file_passes_and_is_reported_valid(config: Config, diabetes_rows: pd.DataFrame):
    write_raw(config, diabetes_rows)
    validate.run(config)
    report = read_report(config)
    assert report == {
        "dataset": "diabetes",
        "rows": len(diabetes_rows),
        "valid": True,
        "violation_count": 0,
        "violations": [],
        "extra_columns": [],
        "extra_columns_policy": "drop",
    }


def test_whole_bundled_dataset_satisfies_the_repo_schema(
    config: Config, diabetes_frame: pd.DataFrame
):
    typed, violations = schema_checks.check(diabetes_frame, config.schema)
    assert violations == []
    assert len(typed) == 442


def test_check_returns_typed_schema_columns_in_schema_order(
    config: Config, diabetes_rows: pd.DataFrame
):
    shuffled = diabetes_rows[list(reversed(diabetes_rows.columns))].copy()
    shuffled["patient_id"] = range(len(shuffled))  # extra columns are dropped, not fatal
    shuffled["age"] = shuffled["age"].astype(str)  # numeric text is coerced to float
    typed, violations = schema_checks.check(shuffled, config.schema)
    assert violations == []
    assert list(typed.columns) == list(config.schema.columns)
    assert all(dtype == np.float64 for dtype in typed.dtypes)
    np.testing.assert_allclose(typed["age"], diabetes_rows["age"])


# ----------------------------------------------------------------------------------- bad data


def test_missing_column_is_refused(config: Config, diabetes_rows: pd.DataFrame):
    message, report = run_failing(config, diabetes_rows.drop(columns=["bmi"]))
    assert "bmi" in message
    assert "column_in_dataframe" in message
    (item,) = report["violations"]
    assert item["rule"] == "column_in_dataframe"
    assert item["count"] == 1
    assert item["examples"] == [{"row": None, "value": "bmi"}]


def test_missing_column_violation_names_the_column(config: Config, diabetes_rows: pd.DataFrame):
    message, report = run_failing(config, diabetes_rows.drop(columns=["bmi"]))
    assert report["violations"][0]["column"] == "bmi"
    assert "column 'bmi'" in message


def test_non_numeric_string_in_float_column_is_refused(config: Config, diabetes_rows: pd.DataFrame):
    frame = diabetes_rows.astype({"bp": object})
    frame.loc[3, "bp"] = "high"
    message, report = run_failing(config, frame)
    assert "column 'bp'" in message
    assert "coerce_dtype('float64')" in message
    item = violation(report, "bp", "coerce_dtype")
    assert item["count"] == 1
    assert item["examples"] == [{"row": 3, "value": "high"}]
    assert {v["column"] for v in report["violations"]} == {"bp"}, "only the bad column is blamed"
    # range checks that merely choke on the string repeat the coercion failure: not reported
    assert all(ex["row"] is not None for v in report["violations"] for ex in v["examples"])
    assert "TypeError" not in message


@pytest.mark.parametrize(
    ("column", "bad_value", "rule"),
    [
        ("s1", 0.9, "less_than_or_equal_to(0.5)"),
        ("s1", -0.9, "greater_than_or_equal_to(-0.5)"),
        ("target", 500.0, "less_than_or_equal_to(400"),
        ("target", -1.0, "greater_than_or_equal_to(0"),
    ],
)
def test_out_of_range_value_is_refused(
    config: Config, diabetes_rows: pd.DataFrame, column: str, bad_value: float, rule: str
):
    frame = diabetes_rows.copy()
    frame.loc[[2, 5], column] = bad_value
    message, report = run_failing(config, frame)
    assert f"column '{column}'" in message
    assert rule in message
    (item,) = report["violations"]
    assert item["column"] == column
    assert item["rule"].startswith(rule)
    assert item["count"] == 2
    assert [ex["row"] for ex in item["examples"]] == [2, 5]
    assert [float(ex["value"]) for ex in item["examples"]] == [bad_value, bad_value]


def test_boundary_values_are_allowed(config: Config, diabetes_rows: pd.DataFrame):
    frame = diabetes_rows.copy()
    frame.loc[0, "s1"], frame.loc[1, "s1"] = 0.5, -0.5
    frame.loc[0, "target"], frame.loc[1, "target"] = 400.0, 0.0
    write_raw(config, frame)
    validate.run(config)
    assert read_report(config)["valid"] is True


def test_nan_in_target_is_refused(config: Config, diabetes_rows: pd.DataFrame):
    frame = diabetes_rows.copy()
    frame.loc[4, "target"] = np.nan
    message, report = run_failing(config, frame)
    assert "column 'target'" in message
    assert "not_nullable" in message
    (item,) = report["violations"]
    assert (item["column"], item["rule"], item["count"]) == ("target", "not_nullable", 1)
    assert item["examples"] == [{"row": 4, "value": None}]


def test_nan_in_non_nullable_feature_is_refused(config: Config, diabetes_rows: pd.DataFrame):
    frame = diabetes_rows.copy()
    frame.loc[[7, 8, 9], "s6"] = np.nan
    message, report = run_failing(config, frame)
    assert "column 's6'" in message and "not_nullable" in message
    item = violation(report, "s6", "not_nullable")
    assert item["count"] == 3
    assert [ex["row"] for ex in item["examples"]] == [7, 8, 9]


def test_empty_file_is_refused(config: Config):
    message, report = run_failing(config, b"")
    assert "(dataset)" in message
    assert "not_empty" in message
    assert report["rows"] == 0
    (item,) = report["violations"]
    assert (item["column"], item["rule"], item["count"]) == ("(dataset)", "not_empty", 1)
    assert item["examples"] == [{"row": None, "value": "empty file"}]


def test_header_only_file_is_refused(config: Config, diabetes_rows: pd.DataFrame):
    message, report = run_failing(config, (",".join(diabetes_rows.columns) + "\n").encode())
    assert "not_empty" in message
    assert report["rows"] == 0
    assert [v["rule"] for v in report["violations"]] == ["not_empty"]
    assert report["violations"][0]["examples"][0]["value"] == "a header only, no data rows"


def test_every_violation_is_collected_not_just_the_first(
    config: Config, diabetes_rows: pd.DataFrame
):
    frame = diabetes_rows.copy()
    frame.loc[range(10, 18), "bmi"] = 0.75  # 8 bad rows: more than the examples shown
    frame.loc[20, "target"] = np.nan
    message, report = run_failing(config, frame)
    assert "column 'bmi'" in message and "column 'target'" in message
    assert "2 kind(s)" in message
    bmi = violation(report, "bmi", "less_than_or_equal_to")
    assert bmi["count"] == 8
    assert [ex["row"] for ex in bmi["examples"]] == list(range(10, 10 + schema_checks.MAX_EXAMPLES))
    assert violation(report, "target", "not_nullable")["count"] == 1
    assert report["violation_count"] == 9


def test_report_of_a_bad_file_replaces_an_earlier_valid_report(
    config: Config, diabetes_rows: pd.DataFrame
):
    write_raw(config, diabetes_rows)
    validate.run(config)
    assert read_report(config)["valid"] is True
    frame = diabetes_rows.copy()
    frame.loc[0, "age"] = 3.0
    _, report = run_failing(config, frame)
    assert violation(report, "age", "less_than_or_equal_to")["count"] == 1


def test_read_typed_refuses_a_bad_parquet_file(
    config: Config, diabetes_rows: pd.DataFrame, tmp_path: Path
):
    frame = diabetes_rows.copy()
    frame.loc[1, "sex"] = 9.0
    path = tmp_path / "train.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataValidationError, match=r"column 'sex': less_than_or_equal_to\(0\.5\)"):
        schema_checks.read_typed(path, config.schema)
    diabetes_rows.to_parquet(path, index=False)
    assert list(schema_checks.read_typed(path, config.schema).columns) == list(
        config.schema.columns
    )


def test_columns_the_schema_does_not_list_are_reported_and_dropped(
    config: Config, diabetes_rows: pd.DataFrame, capsys: pytest.CaptureFixture[str]
):
    frame = diabetes_rows.assign(patient_id=range(len(diabetes_rows)), note="x")
    write_raw(config, frame)
    validate.run(config)
    report = read_report(config)
    assert report["valid"] is True
    assert report["extra_columns"] == ["patient_id", "note"]
    assert report["extra_columns_policy"] == "drop"
    warning = capsys.readouterr().err
    assert "2 column(s) the schema does not list are dropped: patient_id, note" in warning
    typed, _ = schema_checks.check(frame, config.schema)
    assert list(typed.columns) == list(config.schema.columns)


def test_the_strict_option_refuses_columns_the_schema_does_not_list(
    config: Config, diabetes_rows: pd.DataFrame
):
    strict = config.schema.model_copy(update={"extra_columns": "fail"})
    frame = diabetes_rows.assign(patient_id=range(len(diabetes_rows)))
    message, report = run_failing(replace(config, schema=strict), frame)
    assert "patient_id" in message
    assert report["extra_columns"] == ["patient_id"]
