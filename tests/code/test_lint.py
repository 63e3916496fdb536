"""The lint stage of CI, run as tests so `make test` (and .ci/run) fails on a lint regression."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command",
    [["black", "--check", "--quiet", "."], ["flake8"], ["mypy"]],
    ids=["black", "flake8", "mypy"],
)
def test_lint_stage_passes(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
