"""Labelled production rows out of the prediction log, for the next retrain (ingest's extra rows).

Only rows that satisfy the dataset schema are handed to ingest: one bad row (an out-of-range label
from an older service, a feature logged under the ``flag`` policy) would otherwise stop the validate
stage, and with it every retrain. The others are quarantined beside the export, outside the folder
ingest reads, with a report of what is wrong with them, and counted.

CLI::

    python -m service.prediction_log export --db sqlite:///predictions.db \\
        --bundle models/champion [--out data/feedback/export-<time>.parquet] \\
        [--quarantine-dir data/quarantine] [--since ISO] [--until ISO]
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from sqlalchemy.exc import SQLAlchemyError

from mloop.config import ConfigError, DatasetSchema, load_schema
from mloop.encoding import decode_codes
from mloop.errors import DataValidationError
from mloop.fileio import write_json
from service.prediction_log.reader import LogReader
from service.prediction_log.tables import PredictionLogError, redact

DEFAULT_DB_URL = "sqlite:///predictions.db"
DEFAULT_QUARANTINE_DIR = Path("data/quarantine")
# mloop.bundle's file names, repeated: importing it loads the model runtimes (seconds, for a CLI
# that reads two files); tests/service/prediction_log/test_export.py checks that they agree.
SCHEMA_FILE = "schema.yaml"
REFERENCE_FILE = "reference_stats.json"
META_FILE = "bundle.json"
EXPORT_SUFFIXES = (".csv", ".parquet")
# Carried into the quarantine file, to trace a rejected row back to its prediction.
TRACE_COLUMNS = ["prediction_id", "model_version", "created_at", "prediction"]
MAX_EXAMPLES = 5


@dataclass
class ExportResult:
    """Rows written for ingest, rows quarantined, and where each went (None: nothing written)."""

    exported: int = 0
    quarantined: int = 0
    path: Path | None = None
    quarantine_file: Path | None = None
    report_file: Path | None = None


def _type_problems(frame: pd.DataFrame, schema: DatasetSchema) -> pd.Series:
    """Per row, why a cell cannot take its column's dtype without changing it ("" if none).

    Labels come back from JSON as Python values: ``3.0`` is a fine int, but ``2.5`` or ``"x"`` is
    not, and casting would silently truncate or fail the whole column.
    """
    reasons = pd.Series("", index=frame.index, dtype=object)
    for name, spec in schema.columns.items():
        raw = frame[name]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna()
        reason = f"{name}: not a number"
        if spec.dtype == "int":
            fraction = values.notna() & (values != values.round())
            bad |= fraction
            reason = f"{name}: not an integer"
        elif spec.dtype == "bool":
            bad |= values.notna() & ~values.isin([0, 1])
            reason = f"{name}: not a boolean"
        elif spec.dtype == "category":  # logged as its code: the position in the schema's list
            bad |= values.notna() & ~values.isin(range(len(spec.categories)))
            reason = f"{name}: not a category code"
        reasons[bad & (reasons == "")] = reason
    return reasons


def _cast(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Each column as its schema dtype, a category's code as its text (rows that cannot take it
    were removed before)."""
    out = frame.copy()
    for name, spec in schema.columns.items():
        values = pd.to_numeric(out[name])
        if spec.dtype == "category":
            out[name] = values
        elif spec.dtype == "int" and values.notna().all():
            out[name] = values.astype("int64")
        elif spec.dtype == "bool" and values.notna().all():
            out[name] = values.astype(bool)
        else:
            out[name] = values.astype("float64")
    return decode_codes(out, schema)


def _type_violations(reasons: pd.Series, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Type problems in the validate stage's violation format (column, rule, count, examples)."""
    violations = []
    for reason, rows in reasons[reasons != ""].groupby(reasons[reasons != ""]):
        column, rule = str(reason).split(": ", 1)
        examples = [
            {"row": int(row), "value": str(frame.at[row, column])}
            for row in rows.index[:MAX_EXAMPLES]
        ]
        violations.append(
            {"column": column, "rule": rule, "count": len(rows), "examples": examples}
        )
    return violations


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Written to a temp name and renamed, so ingest never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp_name, index=False)
        else:
            frame.to_csv(tmp_name, index=False)
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would hide the rows from other users
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def export_labelled(
    log: LogReader,
    path: Path,
    schema: DatasetSchema,
    since: float | None = None,
    until: float | None = None,
    quarantine_dir: Path = DEFAULT_QUARANTINE_DIR,
) -> ExportResult:
    """Write the labelled predictions made in [since, until) that satisfy ``schema`` as dataset
    rows (exactly ``schema.columns``, in order, typed per the schema; CSV or Parquet by suffix),
    and quarantine the others in ``quarantine_dir`` (``<name>.rejected.csv`` with the rows and
    their prediction ids, ``<name>.report.json`` with the violations). With nothing to write, no
    file is made (an empty file would still change the data DVC tracks).
    """
    if path.suffix not in EXPORT_SUFFIXES:
        raise PredictionLogError(f"{path}: export format must be one of {EXPORT_SUFFIXES}")
    if quarantine_dir.resolve() == path.parent.resolve():
        raise PredictionLogError("the quarantine folder must not be the folder ingest reads")
    labelled = log.labelled_rows(since, until)
    result = ExportResult()
    if labelled.empty:
        return result
    missing = [name for name in schema.features if name not in labelled.columns]
    if missing:
        raise PredictionLogError(
            f"logged predictions lack feature(s) {', '.join(missing)} of schema "
            f"{schema.name!r}: were they made by a model of another dataset?"
        )
    frame = labelled[schema.features].copy()
    frame[schema.target] = labelled["actual"]
    frame = frame[list(schema.columns)]
    reasons = _type_problems(frame, schema)
    mistyped = reasons.index[reasons != ""]
    violations = _type_violations(reasons, frame)
    try:
        valid, invalid, schema_violations = partition(
            _cast(frame.drop(index=mistyped), schema), schema
        )
    except DataValidationError as exc:
        raise PredictionLogError(str(exc)) from None
    rejected = mistyped.append(invalid)
    violations += schema_violations
    if len(valid):
        _write_atomically(valid, path)
        result.exported, result.path = len(valid), path
    if len(rejected):
        rows = rejected.sort_values()
        quarantine = pd.concat([frame.loc[rows], labelled.loc[rows, TRACE_COLUMNS]], axis=1)
        result.quarantine_file = quarantine_dir / f"{path.stem}.rejected.csv"
        result.report_file = quarantine_dir / f"{path.stem}.report.json"
        _write_atomically(quarantine, result.quarantine_file)
        write_json(
            result.report_file,
            {
                "log": redact(log.url),
                "schema": schema.name,
                "since": iso(since),
                "until": iso(until),
                "labelled_rows": len(labelled),
                "exported": len(valid),
                "quarantined": len(rejected),
                "export_file": str(path) if len(valid) else None,
                "quarantine_file": str(result.quarantine_file),
                "violations": violations,
            },
        )
        result.quarantined = len(rejected)
    return result


def partition(
    frame: pd.DataFrame, schema: DatasetSchema
) -> tuple[pd.DataFrame, pd.Index, list[dict[str, Any]]]:
    """mloop.schema_checks.partition, imported when needed: pandera takes ~1 s to import."""
    from mloop.schema_checks import partition as split_by_schema

    return split_by_schema(frame, schema)


# ---------------------------------------------------------------------------------- CLI helpers


def parse_time(text: str | None) -> float | None:
    """ISO 8601 date or date-time to epoch seconds; a time without an offset is taken as UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PredictionLogError(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-06-01 or 2024-06-01T12:00:00+02:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def load_bundle_schema(bundle: Path) -> DatasetSchema:
    """The dataset schema a champion bundle was trained on (without loading its model)."""
    if not bundle.is_dir():
        raise PredictionLogError(f"bundle directory {bundle} does not exist")
    try:
        return load_schema(bundle / SCHEMA_FILE)
    except ConfigError as exc:
        raise PredictionLogError(str(exc)) from None


def export(
    db: str = typer.Option(DEFAULT_DB_URL, "--db", help="SQLAlchemy URL of the prediction log"),
    bundle: Path = typer.Option(
        Path("models/champion"), "--bundle", help="champion bundle: its schema.yaml is used"
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="output .parquet or .csv",
        show_default="data/feedback/export-<UTC time>.parquet",
    ),
    quarantine_dir: Path = typer.Option(
        DEFAULT_QUARANTINE_DIR,
        "--quarantine-dir",
        help="rows that violate the schema, and the report of why (not read by ingest)",
    ),
    since: str | None = typer.Option(None, "--since", help="ISO time, inclusive (UTC if naive)"),
    until: str | None = typer.Option(None, "--until", help="ISO time, exclusive (UTC if naive)"),
) -> None:
    """Export labelled predictions as dataset rows for the next retrain (ingest's extra rows)."""
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        out = Path("data/feedback") / f"export-{stamp}.parquet"
    try:
        schema = load_bundle_schema(bundle)
        start, end = parse_time(since), parse_time(until)
        log = LogReader.open_existing(db)
        try:
            result = export_labelled(log, out, schema, start, end, quarantine_dir)
        finally:
            log.close()
    except (PredictionLogError, SQLAlchemyError) as exc:
        typer.echo(f"export failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if result.exported:
        typer.echo(f"exported {result.exported} labelled row(s) to {out}")
    if result.quarantined:
        typer.echo(
            f"quarantined {result.quarantined} row(s) that violate the {schema.name} schema: "
            f"{result.quarantine_file} (why: {result.report_file})",
            err=True,
        )
    if not result.exported and not result.quarantined:
        typer.echo("no labelled predictions in the window: nothing written")
