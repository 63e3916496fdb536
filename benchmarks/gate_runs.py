"""The promotion gate on real data: two runs in one throwaway copy, duplicate-aware split, then random.

The second run changes the split, so part of its test rows were in the first champion's training
data: the audit's leak case. For each run it prints every candidate's metrics on the test split,
the gate's decision and the number of rows it compared the two models on.

    python benchmarks/gate_runs.py wine_red       # ../shared/data/winequality-red.csv
    python benchmarks/gate_runs.py wine_white
    python benchmarks/gate_runs.py wine_colour    # red + white, their colour a category feature
    python benchmarks/gate_runs.py tips           # bundled (plotly), four category features

The wine files are in ../shared/data (not on users' machines); tips works anywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.e2e.conftest import dvc_repro, fresh_copy, set_params  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SPLITS = ("group_duplicates", "random")


def write_colour_csv(destination: Path) -> None:
    """UCI's red and white files as one table, with a ``colour`` column (red first)."""
    frames = []
    for colour in ("red", "white"):
        frame = pd.read_csv(SHARED / f"winequality-{colour}.csv", sep=";")
        frame.insert(0, "colour", colour)
        frames.append(frame)
    destination.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(destination, index=False)


def prepare_copy(dataset: str, repo: Path) -> None:
    if dataset == "wine_colour":
        write_colour_csv(repo / "data/external/winequality-colour.csv")
    schema_path = repo / f"datasets/{dataset}.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    if schema["source"]["kind"] == "path" and dataset != "wine_colour":
        source = (REPO / schema["source"]["path"]).resolve()
        if not source.is_file():
            sys.exit(f"{source} not found: this dataset needs ../shared/data")
        schema["source"]["path"] = str(source)
        schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    set_params(repo, dataset=f"datasets/{dataset}.yaml")


def report(repo: Path, split: str, seconds: float) -> None:
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    metric = promotion["metric"]
    print(f"\nsplit={split}: {metrics['test_rows']} test rows, dvc repro {seconds:.0f} s")
    for name, values in metrics["candidates"].items():
        print(f"  {name:<14} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
    challenger = promotion["challenger"]["name"] if promotion.get("challenger") else "none"
    comparison = promotion.get("comparison")
    print(f"  challenger {challenger}; gate: {promotion['decision']}: {promotion['reason']}")
    if comparison:
        theirs = comparison.get("champion") or {}
        ours = comparison.get("challenger") or {}
        print(
            f"  compared on {comparison['rows']} of {comparison['test_rows']} test rows "
            f"(seen by the champion: {comparison['seen_by_champion']}); {metric}: challenger "
            f"{ours.get(metric, float('nan')):.4f}, champion {theirs.get(metric, float('nan')):.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=["wine_red", "wine_white", "wine_colour", "tips"])
    parser.add_argument("--keep", action="store_true", help="keep the throwaway copy")
    args = parser.parse_args()
    if args.dataset.startswith("wine") and not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the wine datasets need ../shared/data")
    workdir = Path(tempfile.mkdtemp(prefix=f"mloop-gate-{args.dataset}-"))
    try:
        repo = fresh_copy(workdir / "repo")
        prepare_copy(args.dataset, repo)
        for split in SPLITS:
            set_params(repo, split__strategy=split)
            started = time.perf_counter()
            dvc_repro(repo)
            report(repo, split, time.perf_counter() - started)
    finally:
        if args.keep:
            print(f"\nkept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
