"""The dataset schema as pandera checks: every violation of a frame, grouped by column and rule.

Shared by the validate stage, the stages that re-read its output (:func:`read_typed`), and the
prediction log's export (:func:`partition`), so a row is judged by one rule set everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

from mloop.config import ColumnSpec, DatasetSchema
from mloop.errors import DataValidationError

PANDAS_DTYPES = {"float": "float64", "int": "int64", "bool": "bool", "category": "str"}
MAX_EXAMPLES = 5


def _checks(spec: ColumnSpec) -> list[pa.Check]:
    checks = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    if spec.allowed is not None:
        checks.append(pa.Check.isin(spec.allowed))
    return checks


def dataframe_schema(schema: DatasetSchema) -> pa.DataFrameSchema:
    """The pandera schema of a dataset: dtypes are coerced so bad cells are reported row by row."""
    columns = {
        name: pa.Column(
            PANDAS_DTYPES[spec.dtype],
            checks=_checks(spec),
            nullable=spec.nullable and name != schema.target,
            coerce=True,
            description=spec.description or None,
        )
        for name, spec in schema.columns.items()
    }
    return pa.DataFrameSchema(
        columns,
        # Extra columns are dropped (reported by the stage) unless the schema refuses them:
        # sources often carry ids or notes.
        strict=True if schema.extra_columns == "fail" else "filter",
        ordered=False,
        checks=[pa.Check(lambda frame: len(frame) > 0, element_wise=False, name="not_empty")],
        name=schema.name,
    )


def _violations(errors: pa.errors.SchemaErrors) -> list[dict[str, Any]]:
    cases = errors.failure_cases.copy()
    dataset_level = cases["schema_context"] == "DataFrameSchema"
    missing_column = dataset_level & (cases["check"] == "column_in_dataframe")
    # pandera names the schema as the "column" of dataset-level failures; the missing column's
    # name is the failure case, and other dataset-level rules (not_empty) concern the whole file.
    cases.loc[missing_column, "column"] = cases.loc[missing_column, "failure_case"]
    cases.loc[dataset_level & ~missing_column, "column"] = "(dataset)"
    # A value that failed dtype coercion also makes range checks raise TypeError; those rows only
    # repeat the coercion failure, without a row number, so they are dropped.
    raised = cases["failure_case"].astype(str).str.match(r"^\w+Error\(") & cases["index"].isna()
    cases = cases[~raised]
    cases["column"] = cases["column"].fillna("(dataset)").astype(str)
    cases["check"] = cases["check"].astype(str)
    violations = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        examples = []
        for _, row in group.head(MAX_EXAMPLES).iterrows():
            value = row["failure_case"]
            index = row["index"]
            examples.append(
                {
                    "row": None if pd.isna(index) else int(index),
                    "value": None if pd.isna(value) else str(value),
                }
            )
        violations.append(
            {"column": column, "rule": check, "count": int(len(group)), "examples": examples}
        )
    return violations


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines = []
    for item in violations:
        shown = ", ".join(
            f"row {ex['row']}: {ex['value']}" if ex["row"] is not None else f"{ex['value']}"
            for ex in item["examples"]
        )
        lines.append(
            f"  - column {item['column']!r}: {item['rule']} failed {item['count']}x ({shown})"
        )
    return "\n".join(lines)


def check(frame: pd.DataFrame, schema: DatasetSchema) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Return the typed frame (schema columns only, schema order) and the list of violations."""
    if frame.empty:
        what = "a header only, no data rows" if len(frame.columns) else "empty file"
        return frame, [
            {
                "column": "(dataset)",
                "rule": "not_empty",
                "count": 1,
                "examples": [{"row": None, "value": what}],
            }
        ]
    try:
        typed = dataframe_schema(schema).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return frame, _violations(errors)
    return typed[list(schema.columns)], []


def partition(
    frame: pd.DataFrame, schema: DatasetSchema
) -> tuple[pd.DataFrame, pd.Index, list[dict[str, Any]]]:
    """Split rows by the schema: (the valid rows, typed; the labels of the others; their violations).

    For rows that arrive one by one (labelled production rows), where one bad row must not fail
    the others. A violation of the table itself (a missing column) raises DataValidationError.
    """
    if frame.empty:
        return frame, frame.index, []
    try:
        typed = dataframe_schema(schema).validate(frame, lazy=True)
        return typed[list(schema.columns)], frame.index[:0], []
    except pa.errors.SchemaErrors as errors:
        violations = _violations(errors)
        cases = errors.failure_cases
    table_level = [v for v in violations if all(ex["row"] is None for ex in v["examples"])]
    if table_level:
        raise DataValidationError(
            f"the rows as a whole violate the schema:\n{format_violations(table_level)}"
        )
    bad = pd.Index(cases["index"].dropna().unique())
    kept = frame.drop(index=bad)
    valid, remaining = check(kept, schema) if len(kept) else (kept, [])
    if remaining:  # every failing row was dropped: anything left is a bug, not data
        raise DataValidationError(
            f"rows still invalid after partition:\n{format_violations(remaining)}"
        )
    return valid, bad, violations


def read_typed(path: Path, schema: DatasetSchema) -> pd.DataFrame:
    """Read a data file that must satisfy the schema (later stages trust validate, but verify cheaply)."""
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    typed, violations = check(frame, schema)
    if violations:
        raise DataValidationError(f"{path} violates the schema:\n{format_violations(violations)}")
    return typed
