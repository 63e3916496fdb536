"""Stage 0 - fingerprint: the dataset source's sha256, taken again on every repro.

The source is named inside the dataset schema, not in ``dvc.yaml``, so DVC cannot see a CSV edited
in place: it would keep the old data and say "up to date". This stage (``always_changed`` in
``dvc.yaml``) reads the source and writes its sha256 to ``data/raw/source.json``, a dependency of
ingest: when the bytes are unchanged the file is too, and nothing else runs; when they changed,
ingest runs again and says so. A path source is read whole (a pinned sha256 is checked here
already); a bundled one is rendered; a URL source is not downloaded: its sha256 must be pinned,
and ingest checks the bytes it downloads against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mloop import sources
from mloop.config import DEFAULT_PARAMS, Config, load_config
from mloop.console import console, stage
from mloop.fileio import read_json, write_json


def fingerprint(config: Config) -> dict[str, Any]:
    """The source's identity: its kind, where it is, and its sha256."""
    source = config.schema.source
    if source.kind == "url":
        return {"kind": "url", "origin": source.url, "sha256": source.sha256}
    fetched = sources.fetch(source, base_dir=config.params_file.parent)
    return {"kind": source.kind, "origin": fetched.origin, "sha256": fetched.sha256}


def run(config: Config) -> dict[str, Any]:
    paths = config.params.paths
    identity = fingerprint(config)
    write_json(paths.source_fingerprint, identity)
    last = read_json(paths.raw_manifest) if paths.raw_manifest.is_file() else {}
    before = last.get("source_sha256")
    if before and before != identity["sha256"]:
        console.print(
            f"[yellow]source changed[/] since the last ingest: {identity['origin']} sha256 "
            f"{before[:12]}… → {str(identity['sha256'])[:12]}…"
        )
    else:
        console.print(f"source {identity['origin']}: sha256 {str(identity['sha256'])[:12]}…")
    return identity


def main(params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")) -> None:
    """Record the dataset source's sha256 (DVC runs this on every repro)."""
    with stage("fingerprint"):
        run(load_config(params))


if __name__ == "__main__":
    typer.run(main)
