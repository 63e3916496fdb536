"""Stage 2 - validate: check the raw data against the dataset schema with pandera.

Validation is lazy (every violation is collected, not just the first) and the result is grouped by
column and rule, so a bad file yields one readable list rather than a wall of failure rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from mloop.config import DEFAULT_PARAMS, Config, load_config
from mloop.console import console, stage
from mloop.errors import DataValidationError
from mloop.fileio import write_json
from mloop.schema_checks import check, format_violations

__all__ = ["check", "format_violations", "main", "run"]  # check: re-exported for callers


def run(config: Config) -> None:
    paths = config.params.paths
    try:
        frame = pd.read_csv(paths.raw_data)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    _, violations = check(frame, config.schema)
    extra = [str(name) for name in frame.columns if name not in config.schema.columns]
    write_json(
        paths.validation_report,
        {
            "dataset": config.schema.name,
            "rows": int(len(frame)),
            "valid": not violations,
            "violation_count": sum(v["count"] for v in violations),
            "violations": violations,
            "extra_columns": extra,
            "extra_columns_policy": config.schema.extra_columns,
        },
    )
    if extra and config.schema.extra_columns == "drop":
        console.print(
            f"[yellow]warning:[/] {len(extra)} column(s) the schema does not list are dropped: "
            f"{', '.join(extra)} (set `extra_columns: fail` in the dataset file to refuse them)"
        )
    if violations:
        raise DataValidationError(
            f"{paths.raw_data} has {len(violations)} kind(s) of schema violation "
            f"(report: {paths.validation_report}):\n{format_violations(violations)}"
        )
    console.print(f"{paths.raw_data}: {len(frame)} rows satisfy the {config.schema.name} schema")


def main(params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")) -> None:
    """Check the raw data against the dataset schema; fail with a list of violations."""
    with stage("validate"):
        run(load_config(params))


if __name__ == "__main__":
    typer.run(main)
