"""mloop.tracking.git_commit: a run that only rewrote the pipeline's own outputs is a clean run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mloop.tracking import git_commit


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("params.yaml", "dvc.lock", "reports/metrics.json", "src/mloop/train.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "v1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_outputs_of_the_pipeline_do_not_make_a_run_dirty(repo: Path) -> None:
    (repo / "dvc.lock").write_text("v2\n")
    (repo / "reports/metrics.json").write_text("v2\n")
    commit, dirty = git_commit([Path("reports/metrics.json")])
    assert commit == git(repo, "rev-parse", "HEAD") and dirty is False


@pytest.mark.parametrize("changed", ["params.yaml", "src/mloop/train.py"])
def test_changed_code_or_params_make_it_dirty(repo: Path, changed: str) -> None:
    (repo / "dvc.lock").write_text("v2\n")
    (repo / changed).write_text("v2\n")
    assert git_commit([Path("reports")])[1] is True
