"""The lint stage of CI, run as tests so `make test` (and .ci/run) fails on a lint regression."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO

LINT_IMPORTS = ["-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


@pytest.mark.parametrize(
    "command",
    [["-m", "black", "--check", "--quiet", "."], ["-m", "flake8"], ["-m", "mypy"], LINT_IMPORTS],
    ids=["black", "flake8", "mypy", "import-linter"],
)
def test_lint_stage_passes(command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    result = subprocess.run(
        [sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
