"""Stage 6 - promote: the best eligible candidate replaces the champion only if it is as good.

"Eligible" means within the single-row latency budget. The champion is whatever the MLflow registry
alias ``champion`` points at; it is re-scored on today's test split, so both sides are judged on the
same rows. Every decision, including "keep the champion", is written to the promotion report.
"""

from __future__ import annotations

import os
from dataclasses import replace
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from mloop.bundle import write_bundle
from mloop.config import DEFAULT_PARAMS, Config, load_config, metric_is_lower_better
from mloop.console import console, stage
from mloop.errors import PromotionRefused, StageError
from mloop.fileio import read_json, write_json
from mloop.metrics import round_metrics, score
from mloop.models.store import ModelLoadError, load_predictor, read_meta
from mloop.tracking import configure
from mloop.train import MANIFEST
from mloop.validate import read_typed

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"


def at_least_as_good(challenger: float, champion: float, metric: str, tolerance: float) -> bool:
    """Relative tolerance: with 0.01 the challenger may be up to 1% worse than the champion."""
    slack = tolerance * abs(champion)
    if metric_is_lower_better(metric):
        return challenger <= champion + slack
    return challenger >= champion - slack


def select_challenger(
    quality: dict[str, dict[str, float]],
    latency: dict[str, dict[str, Any]],
    metric: str,
    budget_ms: float,
) -> tuple[str | None, list[str]]:
    """The best candidate within the latency budget, and the names that were over it."""
    over_budget = [name for name in quality if latency[name]["p50_ms"] > budget_ms]
    eligible = [name for name in quality if name not in over_budget]
    if not eligible:
        return None, over_budget
    lower = metric_is_lower_better(metric)
    # Ties go to the earlier candidate in params order (usually the simpler model).
    best = min(eligible, key=lambda n: quality[n][metric] if lower else -quality[n][metric])
    return best, over_budget


def current_champion(config: Config, X: Any, y: Any) -> dict[str, Any] | None:
    """The registry's champion re-scored on this test split, or None if there is none yet."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(config.registered_model_name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    champion: dict[str, Any] = {"version": str(version.version), "run_id": version.run_id}
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="candidate", dst_path=scratch
            )
            directory = Path(local)
            features = read_meta(directory)["features"]
            if features != config.schema.features:
                champion["incompatible"] = "its features differ from the current schema"
                return champion
            champion["metrics"] = round_metrics(
                score(load_predictor(directory), config.schema.task, X, y)
            )
        except (MlflowException, OSError, ModelLoadError) as exc:
            champion["incompatible"] = f"cannot be loaded: {exc}"
    return champion


def _decide(
    challenger: dict[str, Any], champion: dict[str, Any] | None, metric: str, tolerance: float
) -> tuple[bool, str]:
    if champion is None:
        return True, "no champion yet: the first eligible candidate becomes champion"
    if "incompatible" in champion:
        return True, f"champion v{champion['version']} {champion['incompatible']}"
    new, old = challenger["metrics"][metric], champion["metrics"][metric]
    if at_least_as_good(new, old, metric, tolerance):
        return True, f"{metric} {new:.4f} vs champion v{champion['version']} {old:.4f}"
    return False, (
        f"{metric} {new:.4f} is worse than champion v{champion['version']} {old:.4f} "
        f"beyond the tolerance of {tolerance:.1%}"
    )


def _register(config: Config, entry: dict[str, Any], promoted: bool, reason: str) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    version = mlflow.register_model(
        entry["model_uri"],
        config.registered_model_name,
        tags={"mloop.decision": "promoted" if promoted else "rejected", "mloop.reason": reason},
    )
    client.set_registered_model_alias(
        config.registered_model_name, CHALLENGER_ALIAS, version.version
    )
    if promoted:
        client.set_registered_model_alias(
            config.registered_model_name, CHAMPION_ALIAS, version.version
        )
    return str(version.version)


def print_table(
    quality: dict[str, dict[str, float]],
    latency: dict[str, dict[str, Any]],
    metric: str,
    challenger: str | None,
    champion: dict[str, Any] | None,
    budget_ms: float,
) -> None:
    """The candidates, their latency, the chosen challenger (★) and the champion it was held to."""
    names = list(quality)
    columns = list(next(iter(quality.values())))
    table = Table(
        title=f"candidates on the test split (selection: {metric}, budget {budget_ms} ms)"
    )
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("p50 ms/row", justify="right")
    table.add_column("served as")
    for name in names:
        over = latency[name]["p50_ms"] > budget_ms
        label = f"[bold green]{name} ★[/]" if name == challenger else name
        table.add_row(
            label,
            *(f"{quality[name][c]:.4f}" for c in columns),
            f"[red]{latency[name]['p50_ms']:.3f}[/]" if over else f"{latency[name]['p50_ms']:.3f}",
            latency[name]["serving"],
        )
    if champion and "metrics" in champion:
        table.add_row(
            f"[cyan]champion v{champion['version']}[/]",
            *(f"{champion['metrics'].get(c, float('nan')):.4f}" for c in columns),
            "",
            "registry",
        )
    console.print(table)


def run(config: Config) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    schema, params, paths = config.schema, config.params, config.params.paths
    metric, budget = config.selection_metric, params.promote.max_latency_ms
    quality = read_json(paths.metrics)["candidates"]
    latency = read_json(paths.latency)["candidates"]
    manifest = read_json(paths.candidates_dir / MANIFEST)
    if metric not in next(iter(quality.values())):
        raise StageError(f"selection metric {metric!r} is not computed for a {schema.task} task")
    test = read_typed(paths.test_data, schema)
    X, y = test[schema.features].to_numpy(dtype=float), test[schema.target].to_numpy()

    configure(config)
    name, over_budget = select_challenger(quality, latency, metric, budget)
    champion = current_champion(config, X, y)
    print_table(quality, latency, metric, name, champion, budget)

    report: dict[str, Any] = {
        "registered_model": config.registered_model_name,
        "metric": metric,
        "lower_is_better": metric_is_lower_better(metric),
        "tolerance": params.promote.tolerance,
        "latency_budget_ms": budget,
        "over_latency_budget": over_budget,
        "champion_before": champion,
    }
    if name is None:
        promoted, reason = False, f"no candidate predicts one row within {budget} ms"
        report.update(decision="no_eligible_candidate", reason=reason, challenger=None)
        if champion is None and not paths.champion_dir.exists():
            raise StageError(f"{reason}, and there is no champion to keep")
    else:
        entry = manifest["candidates"][name]
        challenger = {
            "name": name,
            "kind": entry["kind"],
            "metrics": quality[name],
            "latency": latency[name],
        }
        promoted, reason = _decide(challenger, champion, metric, params.promote.tolerance)
        challenger["version"] = _register(config, entry, promoted, reason)
        report.update(
            decision="promoted" if promoted else "kept_champion",
            reason=reason,
            challenger=challenger,
        )
        if promoted:
            run_info = MlflowClient().get_run(entry["run_id"]).info
            lineage = manifest["lineage"]
            write_bundle(
                paths.champion_dir,
                model_dir=paths.candidates_dir / name,
                schema_file=config.params_file.parent / params.dataset,
                reference_file=paths.reference_stats,
                meta={
                    "registered_model": config.registered_model_name,
                    "version": challenger["version"],
                    "candidate": name,
                    "kind": entry["kind"],
                    "flavor": entry["flavor"],
                    "serving": entry["serving"],
                    "run_id": entry["run_id"],
                    "model_uri": entry["model_uri"],
                    "dataset": schema.name,
                    "task": schema.task,
                    "target": schema.target,
                    "features": schema.features,
                    "metrics": quality[name],
                    "latency": latency[name],
                    "trained_at": datetime.fromtimestamp(
                        run_info.start_time / 1000, timezone.utc
                    ).isoformat(),
                    "promoted_at": datetime.now(timezone.utc).isoformat(),
                    **lineage,
                },
            )
    write_json(paths.promotion_report, report)

    if promoted:
        console.print(
            f"[bold green]promoted[/] {name} as {config.registered_model_name} "
            f"v{report['challenger']['version']} → {paths.champion_dir}: {reason}"
        )
    else:
        console.print(f"[bold yellow]champion kept[/]: {reason}")
        if params.promote.fail_if_not_promoted:
            raise PromotionRefused(reason)
    return report


def main(
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file"),
    fail_if_not_promoted: bool = typer.Option(
        False, "--fail-if-not-promoted", help="exit 1 when the champion is kept (for CI gates)"
    ),
) -> None:
    """Promote the best candidate if it beats the champion; export the serving bundle."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stage("promote"):
        config = load_config(params)
        if fail_if_not_promoted:
            promote = config.params.promote.model_copy(update={"fail_if_not_promoted": True})
            config = replace(config, params=config.params.model_copy(update={"promote": promote}))
        run(config)


if __name__ == "__main__":
    typer.run(main)
