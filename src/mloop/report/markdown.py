"""The merge-request report as markdown: a verdict first, then the evidence behind it.

Sections: verdict and checks; what changed against the target branch (params, metrics, as DVC
diffs them); champion against challenger (the gate's comparison and thresholds); every candidate
(metrics, latency, MLflow runs); the data (rows, violations, drift); plots; how to reproduce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mloop.report.plots import Plot
from mloop.report.results import Diff, RunResults

MARKER = "<!-- mloop-model-report -->"  # CML adds its own watermark; this one names the generator
MAX_DIFF_ROWS = 40
OK, WARN, FAIL, INFO = "✅", "⚠️", "❌", "ℹ️"


@dataclass
class Context:
    """Where the report was made: the target rev, links, and the CI run (all optional)."""

    target: str | None = None
    metrics_diff: Diff | None = None
    params_diff: Diff | None = None
    run_links: dict[str, str] | None = None
    drift_link: str | None = None
    commit: str | None = None
    pipeline_url: str | None = None
    quality_file: str = "reports/metrics.json"  # the metrics diff rows shown first


def number(value: Any, signed: bool = False) -> str:
    """A metric for a table: two decimals from 1 up, four significant digits below; text as is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else str(value)
    if not math.isfinite(value):
        return str(value)
    sign = "+" if signed else ""
    if isinstance(value, int):
        return f"{value:{sign}d}"
    return f"{value:{sign}.2f}" if abs(value) >= 1 else f"{value:{sign}.4g}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def _relative(new: float, old: float) -> str:
    return f" ({(new - old) / abs(old):+.1%})" if old else ""


def checks(results: RunResults) -> list[tuple[str, str]]:
    """(symbol, sentence) per check a reviewer needs, worst first decides the verdict."""
    found: list[tuple[str, str]] = []
    validation = results.validation
    if validation.get("valid"):
        found.append((OK, f"data valid: {validation.get('rows')} rows, no violations"))
    else:
        found.append((FAIL, f"data invalid: {validation.get('violation_count')} violation(s)"))
    drift = results.drift
    if drift is None or "features" not in drift:
        reason = (drift or {}).get("reason", "no drift summary in this run")
        found.append((INFO, f"drift not measured: {reason}"))
    else:
        drifted, total = len(drift["drifted_features"]), len(drift["features"])
        symbol = WARN if drift["dataset_drift"] else (INFO if drifted else OK)
        found.append((symbol, f"drift: {drifted} of {total} features moved against the champion"))
    promotion = results.promotion
    decision = promotion.get("decision")
    if promotion.get("dry_run") and decision == "promoted":
        found.append((OK, f"gate (dry run): would promote, {promotion.get('reason')}"))
    elif decision == "promoted":
        found.append((OK, f"gate: promoted, {promotion.get('reason')}"))
    elif decision == "kept_champion":
        found.append((INFO, f"gate: champion kept, {promotion.get('reason')}"))
    else:
        found.append((FAIL, f"gate: {decision}, {promotion.get('reason')}"))
    best = results.challenger
    scores = results.metrics.get("candidates", {})
    if best and "baseline" in scores and best != "baseline":
        mine, base = scores[best][results.metric], scores["baseline"][results.metric]
        beats = mine < base if results.lower_is_better else mine > base
        found.append(
            (OK, f"{best} beats the baseline: {results.metric} {number(mine)} vs {number(base)}")
            if beats
            else (WARN, f"{best} does not beat the baseline ({number(mine)} vs {number(base)})")
        )
    return found


def verdict(found: list[tuple[str, str]]) -> str:
    symbols = {symbol for symbol, _ in found}
    if FAIL in symbols:
        return f"{FAIL} **Do not merge**: a check failed."
    if WARN in symbols:
        return f"{WARN} **Review before merging**: see the warnings below."
    if any(sentence.startswith("gate: champion kept") for _, sentence in found):
        return (
            f"{OK} **Safe to merge; the served model will not change**: the challenger did not "
            "beat the champion."
        )
    return f"{OK} **Safe to merge**: every check passed."


def outcome(results: RunResults) -> str:
    """One sentence: what this run means for the served model."""
    promotion, metric = results.promotion, results.metric
    before = (promotion.get("champion_before") or {}).get("version")
    after = (promotion.get("champion_after") or {}).get("version")
    name = results.challenger
    comparison = promotion.get("comparison")
    score = ""
    if comparison:
        old, new = comparison["champion"][metric], comparison["challenger"][metric]
        score = (
            f" ({metric} {number(new)} vs {number(old)}, {number(new - old, signed=True)}, on the "
            f"{comparison['rows']} test rows neither model trained on)"
        )
    if promotion.get("decision") == "promoted":
        if promotion.get("dry_run"):
            replaced = f"replace champion v{before} with" if before else "make its first champion"
            return f"**After the merge**, the default branch's pipeline would {replaced} `{name}`{score}."
        return (
            f"**This run promoted** `{name}` as v{after}"
            + (f", replacing v{before}" if before else "")
            + f"{score}."
        )
    if before:
        return f"**The served model does not change**: champion v{before} stays{score}."
    return "**No champion**: no candidate was eligible."


def _diff_rows(diff: Diff, with_change: bool) -> list[list[str]]:
    rows = []
    for path, key, old, new, change in diff.rows[:MAX_DIFF_ROWS]:
        row = [f"`{path}`", f"`{key}`", number(old), number(new)]
        rows.append(row + [number(change, signed=True)] if with_change else row)
    return rows


def _diff_table(diff: Diff, rows: list[tuple[str, str, Any, Any, Any]], metrics: bool) -> list[str]:
    header = (
        ["file", "metric", "old", "new", "change"] if metrics else ["file", "param", "old", "new"]
    )
    lines = table(header, _diff_rows(Diff(diff.rev, rows[:MAX_DIFF_ROWS]), with_change=metrics))
    if len(rows) > MAX_DIFF_ROWS:
        lines.append(f"\n… and {len(rows) - MAX_DIFF_ROWS} more rows.")
    return lines


def changes(context: Context) -> list[str]:
    """Params and metrics against the target, as DVC diffs them; latency folded away (noisy)."""
    lines = [f"### What changed against `{context.target}`", ""]
    params, metrics = context.params_diff, context.metrics_diff
    for title, diff in (("Params", params), ("Metrics", metrics)):
        if diff is not None and diff.error:
            lines += [f"**{title}**: not compared ({diff.error}).", ""]
        elif diff is not None and not diff.rows:
            lines += [f"**{title}**: unchanged.", ""]
    if params is not None and params.rows and not params.error:
        lines += [f"**Params** (`dvc params diff {params.rev}`):", ""]
        lines += _diff_table(params, params.rows, metrics=False) + [""]
    if metrics is not None and metrics.rows and not metrics.error:
        quality = [row for row in metrics.rows if row[0] == context.quality_file]
        other = [row for row in metrics.rows if row[0] != context.quality_file]
        if quality:
            lines += [f"**Metrics** (`dvc metrics diff {metrics.rev}`):", ""]
            lines += _diff_table(metrics, quality, metrics=True) + [""]
        else:
            lines += [f"**Metrics**: no model metric in `{context.quality_file}` changed.", ""]
        if other:
            lines += [
                f"<details><summary>Latency and other metrics ({len(other)} changed; timings "
                "move a little from run to run)</summary>",
                "",
                *_diff_table(metrics, other, metrics=True),
                "",
                "</details>",
                "",
            ]
    return lines


def gate(results: RunResults) -> list[str]:
    promotion, metric = results.promotion, results.metric
    direction = "lower" if results.lower_is_better else "higher"
    lines = [
        "### Champion against challenger",
        "",
        f"The gate compares `{metric}` ({direction} is better) on the test rows neither model "
        f"trained on: tolerance {promotion.get('tolerance')}, at least "
        f"{promotion.get('min_compared_rows')} such rows (with fewer: "
        f"{promotion.get('too_few_rows')}), single-row latency at most "
        f"{promotion.get('latency_budget_ms')} ms.",
        "",
    ]
    comparison = promotion.get("comparison")
    before = (promotion.get("champion_before") or {}).get("version")
    challenger = promotion.get("challenger") or {}
    if comparison:
        old, new = comparison["champion"], comparison["challenger"]
        rows = [
            [f"champion v{before}", *(number(old.get(m)) for m in old)],
            [f"challenger `{challenger.get('name')}`", *(number(new.get(m)) for m in old)],
            ["change", *(number(new[m] - old[m], signed=True) + _relative(new[m], old[m])
                         for m in old)],
        ]  # fmt: skip
        lines += table(["", *old], rows)
        lines += [
            "",
            f"Compared on {comparison['rows']} of {comparison['test_rows']} test rows "
            f"({comparison['seen_by_champion']} seen by the champion in training, "
            f"{comparison['seen_by_challenger']} by the challenger).",
            "",
        ]
    elif before is None:
        lines += ["No champion yet: the first eligible candidate becomes champion.", ""]
    after = (promotion.get("champion_after") or {}).get("version")
    decision = str(promotion.get("decision")).replace("_", " ")
    if promotion.get("dry_run"):
        outcome = (
            "Dry run: nothing was registered and the champion is untouched; merging lets the "
            "default branch's pipeline run the same gate and promote for real."
        )
    else:
        outcome = f"Champion after this run: v{after} of `{promotion.get('registered_model')}`."
    return lines + [f"**Decision: {decision}**: {promotion.get('reason')}. {outcome}", ""]


def candidates(results: RunResults, links: dict[str, str]) -> list[str]:
    scores = results.metrics.get("candidates", {})
    latency = results.latency.get("candidates", {})
    manifest = results.candidates.get("candidates", {})
    over = set(results.promotion.get("over_latency_budget") or [])
    names = list(scores)
    metric_names = list(next(iter(scores.values()), {}))
    header = ["candidate", "kind", *metric_names, "p50 ms", "p95 ms", "ms / 1k rows", "serving"]
    if links:
        header.append("MLflow")
    rows = []
    for name in names:
        timing = latency.get(name, {})
        label = f"**{name}** (selected)" if name == results.challenger else name
        if name in over:
            label += " (over the latency budget)"
        row = [
            label,
            str(manifest.get(name, {}).get("kind", "")),
            *(number(scores[name].get(m)) for m in metric_names),
            number(timing.get("p50_ms")),
            number(timing.get("p95_ms")),
            number(timing.get("batch_ms_per_1k")),
            str(timing.get("serving", "")),
        ]
        if links:
            row.append(f"[run]({links[name]})" if name in links else "–")
        rows.append(row)
    eligible = [name for name in names if name not in over]
    why = (
        f"`{results.challenger}` has the best `{results.metric}` of the {len(eligible)} "
        f"candidate(s) within the latency budget"
        + (f" ({', '.join(sorted(over))} excluded as too slow)" if over else "")
        + "."
        if results.challenger
        else "No candidate is within the latency budget."
    )
    return [
        f"### Every candidate ({results.metrics.get('test_rows')} test rows)",
        "",
        *table(header, rows),
        "",
        why,
        "",
    ]


def data(results: RunResults, drift_link: str | None) -> list[str]:
    manifest, validation = results.raw_manifest, results.validation
    lines = [
        "### Data",
        "",
        f"`{manifest.get('source')}`: {manifest.get('source_rows')} rows from the source, "
        f"{manifest.get('extra_rows')} labelled production rows appended, "
        f"{manifest.get('rows')} in all.",
        "",
    ]
    violations = validation.get("violations") or []
    if violations:
        lines += ["**Validation violations**:", ""]
        lines += table(
            ["column", "rule", "rows", "examples"],
            [
                [
                    str(v.get("column")),
                    str(v.get("rule")),
                    str(v.get("count")),
                    ", ".join(
                        f"row {e.get('row')}: {e.get('value')}" for e in v.get("examples", [])
                    ),
                ]
                for v in violations
            ],
        )
        lines.append("")
    else:
        lines += [f"Validation: {validation.get('rows')} rows, no violations.", ""]
    drift = results.drift
    if drift is None or "features" not in drift:
        reason = (drift or {}).get("reason", "no drift summary in this run")
        return lines + [f"Drift: not measured ({reason}).", ""]
    lines += [
        f"**Drift** of this run's data ({drift['rows']} rows) against the training data of the "
        f"champion v{drift.get('champion_version')} (Evidently; a feature drifts when its score "
        f"passes the threshold; the data drifts when at least "
        f"{drift['drift_share_threshold']:.0%} of the features do): "
        f"{len(drift['drifted_features'])} of {len(drift['features'])} drifted.",
        "",
    ]
    lines += table(
        ["feature", "method", "score", "threshold", "drifted"],
        [
            [name, str(f.get("method")), number(f.get("score")), number(f.get("threshold")),
             WARN if f.get("drifted") else "no"]
            for name, f in drift["features"].items()
        ],  # fmt: skip
    )
    if drift_link:
        lines += ["", f"The full Evidently report: [drift.html]({drift_link})."]
    return lines + [""]


def plots(images: list[Plot]) -> list[str]:
    if not images:
        return []
    lines = ["### Plots", ""]
    for image in images:
        lines += [f"**{image.title}**", "", f"![{image.title}]({image.file})", ""]
    return lines


def footer(context: Context) -> list[str]:
    made = f"commit `{context.commit[:12]}`" if context.commit else "this checkout"
    if context.pipeline_url:
        made += f", [pipeline]({context.pipeline_url})"
    return [
        "<details><summary>How this report was made</summary>",
        "",
        f"From {made}, by `python -m mloop.report build` over the outputs of `dvc repro` "
        "(`reports/*.json`, the candidates' manifest, the drift summary): every number above "
        "is in those files. Reproduce locally with `make repro && make report`.",
        "",
        "</details>",
    ]


def render(results: RunResults, context: Context, images: list[Plot]) -> str:
    """The whole report, verdict first."""
    found = checks(results)
    schema = results.config.schema
    lines = [
        MARKER,
        f"## Model review: `{schema.name}` ({schema.task}, target `{schema.target}`)",
        "",
        verdict(found),
        "",
        outcome(results),
        "",
        *(f"- {symbol} {sentence}" for symbol, sentence in found),
        "",
    ]
    if context.target:
        lines += changes(context)
    lines += gate(results)
    lines += candidates(results, context.run_links or {})
    lines += data(results, context.drift_link)
    lines += plots(images)
    lines += footer(context)
    return "\n".join(lines) + "\n"
