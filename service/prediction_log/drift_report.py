"""Data-drift report (Evidently) of the logged prediction inputs against the training data.

The service's drift gauges (PSI) say *that* a feature moved; this report is what a person opens to
see *how*. The reference side is reconstructed from the bundle's histograms (``mloop.drift``).

CLI::

    python -m service.prediction_log drift-report --db sqlite:///predictions.db \\
        --bundle models/champion --out reports/drift [--since ISO] [--until ISO]

writes ``drift.html`` (the Evidently report) and ``drift.json`` (window, rows, per-feature score
and verdict, share of drifted features).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer
from sqlalchemy.exc import SQLAlchemyError

from mloop.drift import build_drift_report
from mloop.fileio import read_json, write_json
from service.prediction_log.export import (
    DEFAULT_DB_URL,
    META_FILE,
    REFERENCE_FILE,
    iso,
    load_bundle_schema,
    parse_time,
)
from service.prediction_log.reader import LogReader
from service.prediction_log.tables import PredictionLogError, redact

HTML_FILE = "drift.html"
JSON_FILE = "drift.json"
DEFAULT_MAX_ROWS = 200_000


def drift_report(
    db: str = typer.Option(DEFAULT_DB_URL, "--db", help="SQLAlchemy URL of the prediction log"),
    bundle: Path = typer.Option(
        Path("models/champion"), "--bundle", help="champion bundle (schema + reference stats)"
    ),
    out: Path = typer.Option(Path("reports/drift"), "--out", help="folder for drift.html/json"),
    since: str | None = typer.Option(None, "--since", help="ISO time, inclusive (UTC if naive)"),
    until: str | None = typer.Option(None, "--until", help="ISO time, exclusive (UTC if naive)"),
    max_rows: int = typer.Option(
        DEFAULT_MAX_ROWS, "--max-rows", min=0, help="use only the most recent rows (0: all)"
    ),
) -> None:
    """Write an Evidently data-drift report of the logged inputs in a window vs the training data."""
    try:
        schema = load_bundle_schema(bundle)
        try:
            reference = read_json(bundle / REFERENCE_FILE)
        except (OSError, ValueError) as exc:
            raise PredictionLogError(f"{bundle / REFERENCE_FILE}: unreadable: {exc}") from None
        start, end = parse_time(since), parse_time(until)
        log = LogReader.open_existing(db)
        try:
            current = log.recent_features(start, end, limit=max_rows or None)
        finally:
            log.close()
        if current.empty:
            raise PredictionLogError(
                f"no predictions logged in [{since or 'beginning'}, {until or 'now'}) "
                f"in {redact(db)}: nothing to compare"
            )
        summary = build_drift_report(current, reference, schema.features, html_path=out / HTML_FILE)
    except (PredictionLogError, SQLAlchemyError, ValueError) as exc:
        typer.echo(f"drift report failed: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        version = str(read_json(bundle / META_FILE).get("version"))
    except (OSError, ValueError):
        version = None
    document = {
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "window": {"since": iso(start), "until": iso(end)},
        "db": redact(db),
        "bundle": {"path": str(bundle), "model_version": version, "dataset": schema.name},
        "max_rows": max_rows or None,
        **summary,
    }
    write_json(out / JSON_FILE, document)
    drifted = summary["drifted_features"]
    typer.echo(
        f"{summary['rows']} logged row(s): {len(drifted)}/{len(schema.features)} feature(s) drifted"
        + (f" ({', '.join(drifted)})" if drifted else "")
    )
    typer.echo(f"wrote {out / HTML_FILE} and {out / JSON_FILE}")
