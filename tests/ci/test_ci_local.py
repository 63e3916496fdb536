"""`make ci-local`: .gitlab-ci.yml's jobs run by gitlab-ci-local for an MR and a trigger pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow


def test_merge_request_and_trigger_pipelines_pass_locally(tmp_path: Path) -> None:
    tools = subprocess.run(["make", "-s", "ci-tools"], cwd=REPO, capture_output=True, text=True)
    assert tools.returncode == 0, tools.stdout + tools.stderr
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "ci_local", "--gitlab-ci-local",
         str(REPO / ".tools/node_modules/.bin/gitlab-ci-local"), "--venv",
         str(Path(sys.executable).parent.parent), "--workdir", str(tmp_path / "run"),
         "--summary", str(summary)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    pipelines = {p["kind"]: p for p in json.loads(summary.read_text())}
    expected = {
        "merge_request": ["lint", "data", "train", "evaluate", "report", "report:post"],
        "trigger": [
            "lint",
            "export",
            "data",
            "train",
            "evaluate",
            "report",
            "commit-back",
            "deploy",
        ],
    }
    for kind, jobs in expected.items():
        results = {name: pipelines[kind]["jobs"].get(name, {}).get("result") for name in jobs}
        assert results == {name: "PASS" for name in jobs}, (kind, results)
        assert all(pipelines[kind]["checks"].values()), pipelines[kind]["checks"]
    notes = pipelines["merge_request"]["jobs"]["report:post"].get("note", "")
    assert "skipped: REPO_TOKEN is not set" in notes
