"""bin/stage, the command of every DVC stage: runs without an activated virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

VENV = Path(sys.prefix)


def checkout(tmp_path: Path, with_venv: bool) -> Path:
    """A checkout with bin/stage and src/ (and the project's .venv, if asked)."""
    root = tmp_path / "checkout"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(REPO / "bin" / "stage", root / "bin" / "stage")
    (root / "src").symlink_to(REPO / "src")
    if with_venv:
        (root / ".venv").symlink_to(VENV)
    return root


def bare_path(tmp_path: Path) -> str:
    """A PATH whose python3 is not the project's: it lacks the dependencies (a stand-in)."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    python = fake / "python3"
    python.write_text("#!/bin/sh\necho 'No module named typer' >&2\nexit 1\n")
    python.chmod(0o755)
    return f"{fake}:/usr/bin:/bin"


def run_stage(root: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = path
    return subprocess.run(
        [str(root / "bin" / "stage"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_stage_runs_with_the_checkouts_venv_without_activation(tmp_path: Path) -> None:
    root = checkout(tmp_path, with_venv=True)
    done = run_stage(root, bare_path(tmp_path), "summary", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: python -m mloop.summary" in done.stdout


def test_without_an_environment_the_error_says_what_to_do(tmp_path: Path) -> None:
    root = checkout(tmp_path, with_venv=False)
    done = run_stage(root, bare_path(tmp_path), "ingest")
    assert done.returncode == 1
    assert "run 'make install'" in done.stderr and "pip install -e ." in done.stderr
    assert "Traceback" not in done.stderr
