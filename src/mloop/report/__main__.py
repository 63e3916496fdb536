"""CLI of the merge-request report: ``python -m mloop.report drift|build``.

In GitLab CI the links default to the job's own predefined variables (``CI_JOB_URL``,
``CI_PIPELINE_URL``, ``CI_COMMIT_SHA``); locally they are left out.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import typer

from mloop.config import DEFAULT_PARAMS, load_config
from mloop.console import console, stage
from mloop.errors import StageError
from mloop.report import markdown
from mloop.report.data_drift import measure
from mloop.report.plots import render as render_plots
from mloop.report.results import DRIFT_HTML, dvc_diff, load_results, mlflow_run_links
from mloop.tracking import tracking_uri

app = typer.Typer(add_completion=False, help=__doc__)
PARAMS = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file")
DRIFT_DIR = Path("reports/drift")


@app.command()
def drift(
    params: Path = PARAMS,
    champion: Path | None = typer.Option(
        None, help="champion bundle to compare against (default: paths.champion_dir)"
    ),
    out: Path = typer.Option(DRIFT_DIR, help="folder for drift.json and drift.html"),
) -> None:
    """Measure this run's raw data against the champion's training data (before promote)."""
    with stage("report drift"):
        config = load_config(params)
        paths = config.params.paths
        if not paths.raw_data.exists():
            raise StageError(f"{paths.raw_data} missing: run `dvc repro validate` first")
        summary = measure(paths.raw_data, config.schema, champion or paths.champion_dir, out)
        if summary["status"] != "measured":
            console.print(f"drift not measured: {summary['reason']}")
            return
        drifted = summary["drifted_features"]
        console.print(
            f"{summary['rows']} rows vs champion v{summary['champion_version']}: "
            f"{len(drifted)}/{len(summary['features'])} feature(s) drifted"
            + (f" ({', '.join(drifted)})" if drifted else "")
            + f"; wrote {out}"
        )


def _commit() -> str | None:
    if os.environ.get("CI_COMMIT_SHA"):
        return os.environ["CI_COMMIT_SHA"]
    result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or None


@app.command()
def build(
    params: Path = PARAMS,
    against: str | None = typer.Option(
        None, help="git rev to diff params and metrics against (the MR's target branch)"
    ),
    drift_dir: Path = typer.Option(DRIFT_DIR, help="where `drift` wrote its summary"),
    out: Path = typer.Option(Path("reports/mr"), help="folder for report.md and plots/"),
    drift_link: str | None = typer.Option(
        None, help="URL of the Evidently HTML (default in CI: this job's artifact)"
    ),
) -> None:
    """Write the model review (report.md) and its PNG plots from the last `dvc repro`."""
    with stage("report build"):
        results = load_results(params, drift_dir)
        paths = results.config.params.paths
        images = render_plots(
            paths.plots_dir,
            paths.training_plots_dir,
            results.challenger or "",
            {
                name: float(scores[results.metric])
                for name, scores in results.metrics.get("candidates", {}).items()
                if results.metric in scores
            },
            results.metric,
            out / "plots",
        )
        job_url = os.environ.get("CI_JOB_URL")
        if drift_link is None and job_url and results.drift_html is not None:
            drift_link = f"{job_url}/artifacts/file/{drift_dir / DRIFT_HTML}"
        run_ids = {
            name: str(entry["run_id"])
            for name, entry in results.candidates.get("candidates", {}).items()
            if entry.get("run_id")
        }
        context = markdown.Context(
            target=against,
            metrics_diff=dvc_diff("metrics", against, Path.cwd()) if against else None,
            params_diff=dvc_diff("params", against, Path.cwd()) if against else None,
            run_links=mlflow_run_links(run_ids, tracking_uri(results.config)),
            drift_link=drift_link,
            commit=_commit(),
            pipeline_url=os.environ.get("CI_PIPELINE_URL"),
            quality_file=paths.metrics.as_posix(),
        )
        text = markdown.render(results, context, images)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(text, encoding="utf-8")
        console.print(markdown.verdict(markdown.checks(results)))
        console.print(f"wrote {out / 'report.md'} and {len(images)} plot(s) in {out / 'plots'}")


if __name__ == "__main__":
    app()
