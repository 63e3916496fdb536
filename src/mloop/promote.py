"""Stage 6 - promote: the best eligible candidate replaces the champion only if it is as good.

"Eligible" means within the single-row latency budget. The champion is whatever the MLflow registry
alias ``champion`` points at. Both are scored on the same rows: the test rows neither trained on
(``mloop.gate``). Every decision, including "keep the champion", is written to the promotion
report, and ``models/champion/`` always ends up holding the champion the report names (restored
from the registry if the folder held another model).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from mloop import registry
from mloop.bundle import META_FILE, install_bundle, write_bundle
from mloop.config import DEFAULT_PARAMS, Config, load_config, metric_is_lower_better
from mloop.console import console, stage
from mloop.encoding import feature_matrix
from mloop.errors import PromotionRefused, StageError
from mloop.fileio import read_json, write_json
from mloop.gate import Comparison, TooFewRows, at_least_as_good, compare, decide
from mloop.models.store import MANIFEST, ModelLoadError, load_predictor, read_meta
from mloop.rows import load_training_rows, row_ids
from mloop.tracking import configure
from mloop.schema_checks import read_typed

__all__ = ["at_least_as_good", "run", "select_challenger"]


DRY_RUN_ENV = "MLOOP_PROMOTE_DRY_RUN"


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


def print_table(
    quality: dict[str, dict[str, float]],
    latency: dict[str, dict[str, Any]],
    metric: str,
    challenger: str | None,
    budget_ms: float,
    test_rows: int | None = None,
) -> None:
    """The candidates on the test split, their latency, and the chosen challenger (★)."""
    columns = list(next(iter(quality.values())))
    rows = f"{test_rows} rows" if test_rows else "all rows"
    table = Table(title=f"the test split ({rows}); selection {metric}, budget {budget_ms} ms")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("p50 ms/row", justify="right")
    table.add_column("served as")
    for name in quality:
        over = latency[name]["p50_ms"] > budget_ms
        label = f"[bold green]{name} ★[/]" if name == challenger else name
        table.add_row(
            label,
            *(f"{quality[name][c]:.4f}" for c in columns),
            f"[red]{latency[name]['p50_ms']:.3f}[/]" if over else f"{latency[name]['p50_ms']:.3f}",
            latency[name]["serving"],
        )
    console.print(table)


def print_comparison(comparison: dict[str, Any], challenger: str, champion: str) -> None:
    """Champion and challenger on the rows the gate compared them on."""
    table = Table(
        title=(
            f"the gate: {comparison['rows']} of {comparison['test_rows']} test rows unseen by "
            f"both (seen: {comparison['seen_by_champion']} by the champion, "
            f"{comparison['seen_by_challenger']} by the challenger)"
        )
    )
    scores = [comparison.get("challenger") or {}, comparison.get("champion") or {}]
    columns = list(scores[0] or scores[1])
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for label, values in zip((f"challenger {challenger}", f"champion v{champion}"), scores):
        table.add_row(label, *(f"{values[c]:.4f}" if c in values else "–" for c in columns))
    console.print(table)


def _load_champion(
    config: Config, version: registry.Version, scratch: Path
) -> tuple[Any, Any, str | None]:
    """The champion's served model and training rows from the registry; or why it cannot be
    compared (its features differ, it cannot be loaded)."""
    directory = registry.download(version.run_id, registry.CANDIDATE_ARTIFACT, scratch)
    if directory is None:
        return None, None, "cannot be loaded: its run has no candidate artifact"
    try:
        if read_meta(directory)["features"] != config.schema.features:
            return None, None, "its features differ from the current schema"
        return load_predictor(directory), load_training_rows(directory), None
    except (OSError, ModelLoadError) as exc:
        return None, None, f"cannot be loaded: {exc}"


def _bundle_meta(
    config: Config,
    name: str,
    entry: dict[str, Any],
    version: registry.Version,
    quality: dict[str, float],
    latency: dict[str, Any],
    lineage: dict[str, Any],
    promoted: bool,
    test_rows: int,
) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    schema = config.schema
    run_info = MlflowClient().get_run(entry["run_id"]).info
    now = datetime.now(timezone.utc).isoformat()
    return {
        "registered_model": version.name,
        "version": version.version,
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
        "metrics": quality,
        # the rows behind "metrics": the test split of the day the version was registered
        "metrics_split": {
            "rows": test_rows,
            "test_md5": lineage.get("test_md5"),
            "strategy": config.params.split.strategy,
            "seed": config.params.split.seed,
            "test_size": config.params.split.test_size,
        },
        "latency": latency,
        "trained_at": datetime.fromtimestamp(run_info.start_time / 1000, timezone.utc).isoformat(),
        "registered_at": now,
        "promoted_at": now if promoted else None,
        **lineage,
    }


def _champion_on_disk(config: Config, champion: registry.Version) -> str:
    """Make ``models/champion/`` hold exactly ``champion``; returns what was done."""
    directory = config.params.paths.champion_dir
    meta_file = directory / META_FILE
    if meta_file.is_file():
        on_disk = read_json(meta_file)
        if isinstance(on_disk, dict) and (
            on_disk.get("registered_model"),
            str(on_disk.get("version")),
        ) == (champion.name, champion.version):
            return "already in place"
    if registry.restore_bundle(champion, directory) is None:
        raise StageError(
            f"{directory} does not hold the champion {champion.name} v{champion.version}, and "
            "that version has no bundle in the registry (registered before bundles were "
            "logged): promote a new version, e.g. with promote.tolerance raised for one run"
        )
    return "restored from the registry"


def run(config: Config) -> dict[str, Any]:
    schema, params, paths = config.schema, config.params, config.params.paths
    metric, budget = config.selection_metric, params.promote.max_latency_ms
    quality = read_json(paths.metrics)["candidates"]
    latency = read_json(paths.latency)["candidates"]
    manifest = read_json(paths.candidates_dir / MANIFEST)
    if metric not in next(iter(quality.values())):
        raise StageError(f"selection metric {metric!r} is not computed for a {schema.task} task")
    test = read_typed(paths.test_data, schema)
    X, y = feature_matrix(test, schema), test[schema.target].to_numpy()
    test_ids = row_ids(test, schema)

    configure(config)
    name, over_budget = select_challenger(quality, latency, metric, budget)
    champion = registry.champion(config.registered_model_name)
    print_table(quality, latency, metric, name, budget, len(test))
    report: dict[str, Any] = {
        "registered_model": config.registered_model_name,
        "metric": metric,
        "lower_is_better": metric_is_lower_better(metric),
        "tolerance": params.promote.tolerance,
        "latency_budget_ms": budget,
        "min_compared_rows": params.promote.min_compared_rows,
        "too_few_rows": params.promote.too_few_rows,
        "over_latency_budget": over_budget,
        "test_rows": len(test),
        "candidates_scope": "every test row (reports/metrics.json)",
        "champion_before": None if champion is None else {"version": champion.version},
        "comparison": None,
    }
    promoted = False
    if name is None:
        reason = f"no candidate predicts one row within {budget} ms"
        report.update(decision="no_eligible_candidate", reason=reason, challenger=None)
        if champion is None:
            raise StageError(f"{reason}, and there is no champion to keep")
    else:
        entry = manifest["candidates"][name]
        report["challenger"] = {
            "name": name,
            "kind": entry["kind"],
            "metrics": quality[name],
            "latency": latency[name],
            "run_id": entry["run_id"],
        }
        with tempfile.TemporaryDirectory() as scratch:
            promoted, reason, comparison = _judge(config, name, entry, champion, X, y, test_ids,
                                                  Path(scratch))  # fmt: skip
        report["comparison"] = None if comparison is None else comparison.as_dict()
        report["decision"] = "promoted" if promoted else "kept_champion"
        report["reason"] = reason
        if comparison is not None and champion is not None:
            print_comparison(report["comparison"], name, champion.version)
        if dry_run():
            return _dry_run_report(config, report, champion)
        if champion is not None and champion.run_id == entry["run_id"]:
            version, new = champion, False  # nothing new to register, nor a decision to tag
        else:
            version, new = registry.register(
                config.registered_model_name, entry["model_uri"], entry["run_id"], promoted, reason
            )
        report["challenger"]["version"] = version.version
        report["challenger"]["newly_registered"] = new
        if new or promoted or not registry.has_bundle(version):
            meta = _bundle_meta(
                config, name, entry, version, quality[name], latency[name], manifest["lineage"],
                promoted, len(test),
            )  # fmt: skip
            with tempfile.TemporaryDirectory() as scratch:
                staged = write_bundle(
                    Path(scratch) / "bundle",
                    model_dir=paths.candidates_dir / name,
                    schema_file=config.params_file.parent / params.dataset,
                    reference_file=paths.reference_stats,
                    meta=meta,
                )
                registry.log_bundle(version, staged.path)
                if promoted:
                    install_bundle(staged.path, paths.champion_dir)
        if promoted:
            champion = version
    assert champion is not None
    report["champion_after"] = {"version": champion.version, "run_id": champion.run_id}
    report["champion_dir"] = _champion_on_disk(config, champion)
    write_json(paths.promotion_report, report)

    if promoted:
        console.print(
            f"[bold green]promoted[/] {name} as {champion.name} v{champion.version} "
            f"→ {paths.champion_dir}: {report['reason']}"
        )
    else:
        console.print(
            f"[bold yellow]champion kept[/] ({champion.name} v{champion.version}, "
            f"{paths.champion_dir} {report['champion_dir']}): {report['reason']}"
        )
        if params.promote.fail_if_not_promoted:
            raise PromotionRefused(report["reason"])
    return report


def dry_run() -> bool:
    """True when ``MLOOP_PROMOTE_DRY_RUN`` is set (merge-request pipelines): decide, change nothing."""
    return os.environ.get(DRY_RUN_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _dry_run_report(
    config: Config, report: dict[str, Any], champion: registry.Version | None
) -> dict[str, Any]:
    """Write the verdict without registering, moving an alias or replacing the champion.

    An unmerged branch must not change what production serves or what the next gate compares
    against; merging lets the default branch's pipeline promote for real. The champion's files
    are put in place as in a kept-champion run (DVC expects the output); with no champion at
    all, the folder holds only a note saying so.
    """
    paths = config.params.paths
    report["dry_run"] = True
    report["challenger"].update(version=None, newly_registered=False)
    if champion is None:
        report["champion_after"] = None
        paths.champion_dir.mkdir(parents=True, exist_ok=True)
        (paths.champion_dir / "NO_CHAMPION").write_text(
            f"No champion yet; this was a dry run ({DRY_RUN_ENV}), so none was made.\n"
        )
        report["champion_dir"] = "no champion yet (dry run)"
    else:
        report["champion_after"] = {"version": champion.version, "run_id": champion.run_id}
        report["champion_dir"] = _champion_on_disk(config, champion)
    write_json(paths.promotion_report, report)
    verdict = "would be promoted" if report["decision"] == "promoted" else "champion kept"
    console.print(
        f"[bold]dry run[/]: {report['challenger']['name']} {verdict}; nothing registered "
        f"({DRY_RUN_ENV}): {report['reason']}"
    )
    return report


def _judge(
    config: Config,
    name: str,
    entry: dict[str, Any],
    champion: registry.Version | None,
    X: Any,
    y: Any,
    test_ids: Any,
    scratch: Path,
) -> tuple[bool, str, Comparison | None]:
    """The gate's decision about the challenger, and the comparison it rests on."""
    if champion is None:
        return True, "no champion yet: the first eligible candidate becomes champion", None
    if champion.run_id == entry["run_id"]:
        return False, f"the challenger is the champion v{champion.version} (the same run)", None
    champion_model, champion_rows, problem = _load_champion(config, champion, scratch)
    if problem is not None:
        return True, f"champion v{champion.version} {problem}", None
    directory = config.params.paths.candidates_dir / name
    challenger_rows = load_training_rows(directory)
    if challenger_rows is None:
        raise StageError(f"{directory} records no training rows: run the train stage again")
    comparison = compare(
        champion_model, load_predictor(directory), config.schema.task, X, y, test_ids,
        champion_rows, challenger_rows,
    )  # fmt: skip
    try:
        promoted, reason = decide(
            comparison, champion.version, config.selection_metric, config.params.promote
        )
    except TooFewRows as exc:
        raise StageError(str(exc)) from None
    return promoted, reason, comparison


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
