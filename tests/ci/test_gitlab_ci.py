""".gitlab-ci.yml against GitLab's schema, its rules per pipeline kind, and the CI glue's CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import DIABETES_SCHEMA, PARAMS, REPO

CHECK = Path(sys.executable).parent / "check-jsonschema"


def test_gitlab_ci_yml_matches_gitlabs_schema() -> None:
    result = subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.gitlab-ci", str(REPO / ".gitlab-ci.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    broken = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    broken["lint"]["needs"] = "lint"  # a string where GitLab wants a list
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.gitlab-ci", str(path)], capture_output=True
    )
    assert result.returncode != 0


def test_jobs_call_make_or_the_packages_clis_only() -> None:
    """The YAML stays thin: one make target, bin/ script or CLI per script line."""
    config = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    for name, job in config.items():
        if not isinstance(job, dict) or "script" not in job:
            continue
        for line in job["script"]:
            assert line.split()[0] in {"make", "sh"}, (name, line)
            assert "|" not in line and ";" not in line and "&&" not in line, (name, line)


def ci(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mloop.ci", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})},
    )


def test_promoted_reads_the_gates_verdict(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(PARAMS.read_text())
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "diabetes.yaml").write_text(DIABETES_SCHEMA.read_text())
    report = tmp_path / "reports" / "promotion.json"
    report.parent.mkdir()
    for verdict, code in [
        ({"decision": "promoted", "reason": "better"}, 0),
        ({"decision": "promoted", "reason": "better", "dry_run": True}, 1),
        ({"decision": "kept_champion", "reason": "worse"}, 1),
    ]:
        report.write_text(json.dumps(verdict))
        assert ci("promoted", cwd=tmp_path).returncode == code, verdict
    report.unlink()
    assert ci("promoted", cwd=tmp_path).returncode == 1


@pytest.fixture
def dvc_repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text((REPO / ".dvc" / "config").read_text())
    return tmp_path


def test_remote_takes_the_service_account_from_the_environment(dvc_repo: Path) -> None:
    key = {"type": "service_account", "private_key": "-----SECRET-----", "client_email": "x@y"}
    encoded = base64.b64encode(json.dumps(key).encode()).decode()
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = ci("remote", cwd=dvc_repo, env={**env, "GDRIVE_CREDENTIALS_DATA": encoded})
    assert result.returncode == 0, result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    local = (dvc_repo / ".dvc" / "config.local").read_text()
    key_file = Path(local.split("gdrive_service_account_json_file_path = ")[1].split()[0])
    assert json.loads(key_file.read_text()) == key
    assert not key_file.is_relative_to(dvc_repo) and key_file.stat().st_mode & 0o077 == 0
    assert "remote = gdrive" in local
    key_file.unlink()
    bad = ci("remote", cwd=dvc_repo, env={**env, "GDRIVE_CREDENTIALS_DATA": "not json"})
    assert bad.returncode == 2 and "neither JSON nor base64" in bad.stderr


def test_remote_by_url_hides_its_password(dvc_repo: Path) -> None:
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    url = "webdavs://ci:hunter2@storage.example/dvc"
    result = ci("remote", cwd=dvc_repo, env={**env, "DVC_REMOTE_URL": url})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "ci:***@storage.example" in result.stdout


def test_commit_back_pushes_with_ci_skip_and_hides_the_token(tmp_path: Path) -> None:
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "-C", str(origin), "config", "receive.advertisePushOptions", "true"])
    hook = origin / "hooks" / "pre-receive"
    hook.write_text('#!/bin/sh\necho "$GIT_PUSH_OPTION_0" > "$GIT_DIR/options"\n')
    hook.chmod(0o755)
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True)
    (work / "dvc.lock").write_text("schema: '2.0'\n")
    subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "first"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)
    (work / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (work / "reports").mkdir()
    (work / "reports" / "metrics.json").write_text("{}")
    env = {"CI_COMMIT_BRANCH": "main", "CI_PUSH_TOKEN": "glpat-SECRET"}
    result = ci("commit-back", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert "SECRET" not in result.stdout + result.stderr
    assert (origin / "options").read_text().strip() == "ci.skip"
    changed = subprocess.run(
        ["git", "-C", str(origin), "show", "--name-only", "--format=", "main"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert sorted(changed) == ["dvc.lock", "reports/metrics.json"]
    again = ci("commit-back", cwd=work, env=env)
    assert again.returncode == 0 and "nothing to commit" in again.stdout
