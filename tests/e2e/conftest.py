"""Fixtures that run the real pipeline (real DVC, real MLflow SQLite store) in throwaway repo copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import REPO

# Pipeline outputs and local state that a fresh clone would not have.
GENERATED = ["dvc.lock", "reports", "models", "data/raw", "data/prepared", "mlflow.db", "mlruns"]


def pipeline_env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = str(repo / "src")  # the copy's own code, not the editable install's
    env.pop("MLFLOW_TRACKING_URI", None)
    env["COLUMNS"] = "160"
    return env


def run(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(args), cwd=repo, env=pipeline_env(repo), capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(repo, sys.executable, "-m", "dvc", *args, check=check)


def use_remote(repo: Path, remote: Path) -> None:
    """Point the `local` remote at a folder, in .dvc/config.local as a user would (not committed)."""
    dvc(repo, "remote", "modify", "--local", "local", "url", str(remote))


def fresh_copy(destination: Path) -> Path:
    """What `git clone` of this work tree gives, as its own git repo with its own DVC remote."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not source.is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for name in GENERATED:
        path = destination / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for name in ("data/raw", "data/prepared", "models"):
        (destination / name).mkdir(parents=True, exist_ok=True)
    run(destination, "git", "init", "-q", "-b", "main")
    run(destination, "git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    run(destination, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    use_remote(destination, destination.parent / f"{destination.name}-remote")
    return destination


def set_params(repo: Path, **updates: object) -> None:
    """Override top-level or dotted keys of params.yaml, as `dvc exp run -S key=value` would."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in updates.items():
        node = params
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def dvc_repro(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return dvc(repo, "repro", *extra)


@pytest.fixture(scope="session")
def make_repo(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    def factory(name: str) -> Path:
        return fresh_copy(tmp_path_factory.mktemp(name))

    return factory


@pytest.fixture(scope="session")
def default_run(make_repo: Callable[[str], Path]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The default pipeline (diabetes, all candidates incl. Keras) run once from scratch."""
    repo = make_repo("default")
    return repo, dvc_repro(repo)
