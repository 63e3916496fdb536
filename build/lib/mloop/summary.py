"""Print the last pipeline run's outcome (candidates, latency, promotion decision) from its reports.

`dvc repro` prints the table only when the promote stage runs; this shows it at any time, for
instance after a repro that had nothing to do: ``python -m mloop.summary``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mloop.config import DEFAULT_PARAMS, load_config
from mloop.console import console, stage
from mloop.errors import StageError
from mloop.fileio import read_json
from mloop.promote import print_comparison, print_table


def main(params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")) -> None:
    """Show the metrics table and the promotion decision of the last run."""
    with stage("summary"):
        config = load_config(params)
        paths = config.params.paths
        missing = [
            p for p in (paths.metrics, paths.latency, paths.promotion_report) if not p.exists()
        ]
        if missing:
            raise StageError(f"no pipeline results yet ({missing[0]} missing): run `dvc repro`")
        report = read_json(paths.promotion_report)
        challenger = report.get("challenger") or {}
        print_table(
            read_json(paths.metrics)["candidates"],
            read_json(paths.latency)["candidates"],
            report["metric"],
            challenger.get("name"),
            report["latency_budget_ms"],
            report.get("test_rows"),
        )
        before = report.get("champion_before") or {}
        if report.get("comparison") and before:
            print_comparison(report["comparison"], challenger["name"], before["version"])
        console.print(f"decision: [bold]{report['decision']}[/] — {report['reason']}")
        if paths.champion_dir.joinpath("bundle.json").exists():
            bundle = read_json(paths.champion_dir / "bundle.json")
            console.print(
                f"champion: {bundle['registered_model']} v{bundle['version']} ({bundle['candidate']}, "
                f"served as {bundle['serving']}), commit {bundle['git_commit'][:10]}, "
                f"data md5 {bundle['data_md5'][:10]}; its metrics are on the test split of "
                f"its own day ({_split(bundle)})"
            )


def _split(bundle: dict[str, Any]) -> str:
    split = bundle.get("metrics_split") or {}
    if not split:
        return "not recorded"
    return (
        f"{split['rows']} rows, {split['strategy']} split, seed {split['seed']}, "
        f"test md5 {str(split['test_md5'])[:10]}"
    )


if __name__ == "__main__":
    typer.run(main)
