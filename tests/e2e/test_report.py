"""The merge-request report, built from real pipeline runs: numbers, sections, plots, drift, dry run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mloop.config import load_config
from mloop.report.data_drift import measure
from mloop.report.markdown import number
from tests.e2e.conftest import dvc_repro, run, set_params

pytestmark = pytest.mark.slow
DefaultRun = tuple[Path, subprocess.CompletedProcess[str]]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report(repo: Path, out: Path, *args: str) -> str:
    result = run(repo, sys.executable, "-m", "mloop.report", "build", "--out", str(out), *args)
    assert "wrote" in result.stderr
    return (out / "report.md").read_text()


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the markdown table row that starts with ``first_cell``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in the report")


def test_report_numbers_are_the_runs_own(default_run: DefaultRun, tmp_path: Path) -> None:
    repo, _ = default_run
    run(repo, sys.executable, "-m", "mloop.report", "drift", "--out", str(tmp_path / "drift"))
    text = report(repo, tmp_path / "mr", "--drift-dir", str(tmp_path / "drift"))
    metrics = json.loads((repo / "reports/metrics.json").read_text())["candidates"]
    latency = json.loads((repo / "reports/latency.json").read_text())["candidates"]
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    selected = promotion["challenger"]["name"]

    # the verdict comes first, then the sections in order
    headings = re.findall(r"^### (.+)$", text, flags=re.M)
    assert headings[:4] == [
        "Champion against challenger",
        "Every candidate (111 test rows)",
        "Data",
        "Plots",
    ]
    assert text.index("**Safe to merge**") < text.index("### Champion against challenger")
    # every candidate's metrics and latency, as metrics.json and latency.json have them
    for name, values in metrics.items():
        cells = row(text, f"**{name}** (selected)" if name == selected else name)
        assert cells[2:5] == [number(values[m]) for m in ("rmse", "mae", "r2")]
        assert cells[5] == number(latency[name]["p50_ms"])
        assert cells[8] == latency[name]["serving"]
    assert f"**Decision: promoted**: {promotion['reason']}" in text
    assert f"v{promotion['champion_after']['version']} of `mloop-diabetes`" in text
    # drift of the run's data against its champion: measured, per feature
    drift = json.loads((tmp_path / "drift" / "drift.json").read_text())
    assert drift["status"] == "measured" and (tmp_path / "drift" / "drift.html").stat().st_size
    assert f"{len(drift['drifted_features'])} of 10 drifted" in text
    # plots: real PNGs, referenced relative to report.md (where CML looks for them)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"plots/predictions.png", "plots/residuals.png", "plots/importance.png",
            "plots/training-keras_mlp.png", "plots/candidates.png"} <= set(images)  # fmt: skip
    for image in images:
        data = (tmp_path / "mr" / image).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, image


def test_drift_flags_a_shifted_feature(default_run: DefaultRun, tmp_path: Path) -> None:
    repo, _ = default_run
    config = load_config(repo / "params.yaml")
    frame = pd.read_csv(repo / config.params.paths.raw_data)
    frame["bmi"] = frame["bmi"] + 3 * frame["bmi"].std()
    shifted = tmp_path / "shifted.csv"
    frame.to_csv(shifted, index=False)
    summary = measure(shifted, config.schema, repo / "models/champion", tmp_path / "drift")
    assert summary["drifted_features"] == ["bmi"]
    assert (
        measure(shifted, config.schema, tmp_path / "none", tmp_path / "d2")["status"] == "skipped"
    )


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + file.read_bytes())
    return digest.hexdigest()


def test_merge_request_run_is_a_dry_run_and_its_report_diffs_the_target(
    default_run: DefaultRun, tmp_path: Path
) -> None:
    """A branch changes a hyperparameter; with MLOOP_PROMOTE_DRY_RUN the gate decides but the
    registry and the champion's files stay as they were, and the report diffs against main."""
    from mlflow.tracking import MlflowClient

    source, _ = default_run
    repo = tmp_path / "repo"
    shutil.copytree(source, repo, symlinks=True)
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "main run")
    champion_files = tree_digest(repo / "models/champion")
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    versions = len(client.search_model_versions("name='mloop-diabetes'"))

    set_params(repo, train__candidates__elasticnet__regression__alpha=0.5)
    run(repo, "git", "checkout", "-qb", "feature")
    os.environ["MLOOP_PROMOTE_DRY_RUN"] = "1"
    try:
        dvc_repro(repo)
    finally:
        del os.environ["MLOOP_PROMOTE_DRY_RUN"]
    promotion = json.loads((repo / "reports/promotion.json").read_text())
    assert promotion["dry_run"] is True and promotion["challenger"]["version"] is None
    assert len(client.search_model_versions("name='mloop-diabetes'")) == versions
    assert tree_digest(repo / "models/champion") == champion_files

    text = report(repo, tmp_path / "mr", "--against", "main")
    assert "### What changed against `main`" in text
    cells = row(text, "`params.yaml`")
    assert cells[1:4] == ["`train.candidates.elasticnet.regression.alpha`", "0.01", "0.5"]
    old = json.loads(run(repo, "git", "show", "main:reports/metrics.json").stdout)
    new = json.loads((repo / "reports/metrics.json").read_text())
    rmse = row(text, "`reports/metrics.json`")  # the first changed metric row
    key = rmse[1].strip("`").split(".")
    assert rmse[2:4] == [
        number(old["candidates"][key[1]][key[2]]),
        number(new["candidates"][key[1]][key[2]]),
    ]
    assert "Dry run: nothing was registered" in text
