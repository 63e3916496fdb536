"""Stage 1 - ingest: the dataset source plus labelled production rows, into one raw CSV.

Production rows (exported from the service's prediction log) land as CSV or Parquet files in
``ingest.extra_rows``; appending them here is what lets a retrain learn from live traffic.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from mloop import sources
from mloop.config import DEFAULT_PARAMS, Config, load_config
from mloop.console import console, stage
from mloop.errors import SourceError
from mloop.fileio import file_digest, write_json

EXTRA_ROW_SUFFIXES = (".csv", ".parquet")


def _extra_row_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    if not location.is_dir():
        return []
    return sorted(p for p in location.rglob("*") if p.suffix in EXTRA_ROW_SUFFIXES)


def read_extra_rows(location: Path, columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Read every production-row file, keeping the schema's columns; a file lacking one is an error."""
    frames, used = [], []
    for path in _extra_row_files(location):
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise SourceError(f"production rows in {path} lack column(s): {', '.join(missing)}")
        frames.append(frame[columns])
        used.append(str(path))
    if not frames:
        return pd.DataFrame(columns=columns), used
    return pd.concat(frames, ignore_index=True), used


def run(config: Config) -> pd.DataFrame:
    schema, paths = config.schema, config.params.paths
    fetched = sources.fetch(schema.source, base_dir=config.params_file.parent)
    base = sources.parse_table(fetched.content, fetched.sep, fetched.origin)
    if base.empty:
        what = "a header only" if len(base.columns) else "an empty file"
        raise SourceError(f"{fetched.origin}: no data rows ({what})")
    console.print(f"source {fetched.origin}: {len(base)} rows, sha256 {fetched.sha256[:12]}…")

    extra, extra_files = read_extra_rows(config.params.ingest.extra_rows, list(schema.columns))
    if len(extra):
        console.print(f"production rows: {len(extra)} from {len(extra_files)} file(s)")
        combined = pd.concat([base, extra], ignore_index=True)
    else:
        combined = base

    paths.raw_data.parent.mkdir(parents=True, exist_ok=True)
    combined.to_csv(paths.raw_data, index=False)
    write_json(
        paths.raw_manifest,
        {
            "dataset": schema.name,
            "source": fetched.origin,
            "source_sha256": fetched.sha256,
            "source_rows": len(base),
            "extra_rows": len(extra),
            "extra_files": extra_files,
            "rows": len(combined),
            "raw_md5": file_digest(paths.raw_data),
        },
    )
    console.print(f"wrote {paths.raw_data} ({len(combined)} rows)")
    return combined


def main(params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")) -> None:
    """Read the dataset source (and production rows) into the raw data file."""
    with stage("ingest"):
        run(load_config(params))


if __name__ == "__main__":
    typer.run(main)
