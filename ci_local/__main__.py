"""``make ci-local``: run .gitlab-ci.yml's jobs here with gitlab-ci-local, for two pipeline kinds.

In a throwaway clone of this checkout, beside a bare ``origin`` repo, a DVC remote folder and a
shared MLflow store (standing in for the team's storage and tracking server):

1. setup: the default branch's pipeline has run before: ``dvc repro`` + ``dvc push`` make the
   champion that production serves, committed as a real default-branch pipeline leaves it;
2. a merge-request pipeline on a branch that changes a hyperparameter: lint, data, train,
   evaluate (the gate as a dry run), report, report:post;
3. a trigger pipeline on the default branch, as the retrainer's gitlab backend starts it, with a
   prediction log holding labelled rows: lint, export, data, train, evaluate, report, commit-back,
   deploy.

Each job runs in its own copy of the checkout (``--shell-isolation``) with the artifacts of the
jobs it needs, as on a runner. ``test`` (this suite) is not run inside itself. Prints the job
graph and each job's result and time; exits 1 if a job fails or a check does not hold.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import typer
import yaml

REPO = Path(__file__).resolve().parents[1]
# GitLab sets these itself; ci-local sets them on purpose, to play a merge request or a trigger.
PREDEFINED = ("CI_PIPELINE_SOURCE", "CI_COMMIT_BRANCH", "CI_DEFAULT_BRANCH")
PIPELINES = {
    "merge_request": ["lint", "data", "train", "evaluate", "report", "report:post"],
    "trigger": ["lint", "export", "data", "train", "evaluate", "report", "commit-back", "deploy"],
}
LABELLED_ROWS = 60
RESULT = re.compile(r"^\s*(PASS|FAIL|WARN)\s+(\S+)")
FINISHED = re.compile(r"^(\S+)\s+finished in (.+)$")
SKIPPED = re.compile(r"(skipped: .*)$")


@dataclass
class Pipeline:
    kind: str
    graph: str = ""
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: float = 0.0
    returncode: int = 0
    checks: dict[str, bool] = field(default_factory=dict)


def sh(cwd: Path, *command: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result.stdout


def git(cwd: Path, *args: str) -> str:
    return sh(cwd, "git", "-c", "user.name=ci-local", "-c", "user.email=ci@local", *args)


def make_clone(root: Path) -> tuple[Path, Path]:
    """A clone of this checkout's files (tracked and new, not ignored) with a bare origin."""
    clone, origin = root / "repo", root / "origin.git"
    listed = sh(REPO, "git", "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    git(root, "init", "-q", "--bare", "-b", "main", str(origin))
    git(origin, "config", "receive.advertisePushOptions", "true")
    hook = origin / "hooks" / "pre-receive"  # records the push options the push sent (ci.skip)
    hook.write_text(
        '#!/bin/sh\ni=0\nwhile [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do\n'
        '  eval "echo \\$GIT_PUSH_OPTION_$i" >> "$GIT_DIR/push-options"\n  i=$((i + 1))\ndone\n'
    )
    hook.chmod(0o755)
    git(clone, "init", "-q", "-b", "main")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "as cloned")
    git(clone, "remote", "add", "origin", str(origin))
    git(clone, "push", "-q", "origin", "main")
    git(clone, "fetch", "-q", "origin")
    git(clone, "remote", "set-head", "origin", "main")
    return clone, origin


def environment(venv: Path, variables: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **variables}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


def setup_champion(clone: Path, venv: Path, variables: dict[str, str]) -> None:
    """What the default branch's last pipeline left: a champion, pushed and committed."""
    env = environment(venv, variables)
    sh(clone, "dvc", "remote", "add", "--local", "--force", "--default", "ci",
       variables["DVC_REMOTE_URL"], env=env)  # fmt: skip
    sh(clone, "dvc", "repro", env=env)
    sh(clone, "dvc", "push", env=env)
    (clone / ".dvc" / "config.local").unlink()
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "default branch pipeline: champion v1")
    git(clone, "push", "-q", "origin", "main")
    git(clone, "fetch", "-q", "origin")


def labelled_log(clone: Path, db: Path, rows: int) -> None:
    """A prediction log with ``rows`` predictions and their labels, written by the service's log."""
    sys.path[:0] = [str(clone / "src"), str(clone)]
    import pandas as pd

    from mloop.config import load_config
    from service.prediction_log.buffer import segment_of
    from service.prediction_log.reader import LogReader
    from service.prediction_log.shipper import LogShipper

    config = load_config(clone / "params.yaml")
    schema = config.schema
    frame = pd.read_csv(clone / config.params.paths.raw_data).tail(rows)
    ids = [f"ci-local-{i:04d}" for i in range(len(frame))]
    log = LogShipper(f"sqlite:///{db}", flush_interval_s=0.01)
    log.start()
    reader = LogReader(log.url)
    try:
        matrix = frame[schema.features].to_numpy(dtype=float)
        outputs = frame[schema.target].to_numpy(dtype=float)
        assert log.enqueue(segment_of("1", ids, matrix, schema.features, outputs, time.time()))
        assert log.flush()
        labels = list(zip(ids, frame[schema.target].tolist()))
        accepted = reader.record_feedback(labels, time.time()).accepted
        if len(accepted) != len(ids):
            raise RuntimeError(f"the log accepted {len(accepted)} of {len(ids)} labels")
    finally:
        log.close()
        reader.close()


def run_pipeline(
    kind: str, clone: Path, gcl: Path, venv: Path, variables: dict[str, str]
) -> Pipeline:
    pipeline = Pipeline(kind)
    args = [str(gcl), "--force-shell-executor", "--shell-isolation", "--no-artifacts-to-source"]
    for key, value in variables.items():
        args += ["--variable", f"{key}={value}"]
    env = environment(venv, {"GCL_IGNORE_PREDEFINED_VARS": ",".join(PREDEFINED)})
    listing = subprocess.run(args + ["--list"], cwd=clone, capture_output=True, text=True, env=env)
    pipeline.graph = "\n".join(
        line for line in listing.stdout.splitlines() if line.strip() and not line.startswith(" ")
        if not line.startswith(("parsing", "json schema"))
    )  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        args + PIPELINES[kind], cwd=clone, capture_output=True, text=True, env=env
    )
    pipeline.seconds = time.monotonic() - started
    pipeline.returncode = result.returncode
    (clone.parent / f"{kind}.log").write_text(result.stdout + result.stderr)
    review = clone / ".gitlab-ci-local" / "builds" / "report" / "reports"
    for name in ("mr", "drift"):  # the next pipeline's report job reuses the folder
        if (review / name).is_dir():
            shutil.copytree(review / name, clone.parent / kind / name, dirs_exist_ok=True)
    for line in result.stdout.splitlines():
        if match := FINISHED.match(line.strip()):
            pipeline.jobs.setdefault(match[1], {})["time"] = match[2]
        elif match := RESULT.match(line):
            pipeline.jobs.setdefault(match[2], {})["result"] = match[1]
        if (match := SKIPPED.search(line)) and line.split()[0] in PIPELINES[kind]:
            pipeline.jobs.setdefault(line.split()[0], {})["note"] = match[1]
    return pipeline


def print_pipeline(pipeline: Pipeline) -> None:
    typer.echo(f"\n== {pipeline.kind} pipeline ({pipeline.seconds:.0f} s)\n{pipeline.graph}\n")
    typer.echo(f"{'job':<14}{'result':<8}{'time':<12}note")
    for name in PIPELINES[pipeline.kind]:
        job = pipeline.jobs.get(name, {})
        typer.echo(
            f"{name:<14}{job.get('result', '-'):<8}{job.get('time', '-'):<12}{job.get('note', '')}"
        )
    for check, held in pipeline.checks.items():
        typer.echo(f"{'ok' if held else 'FAILED':<8}{check}")


def check_merge_request(clone: Path, pipeline: Pipeline) -> None:
    report = clone.parent / "merge_request" / "mr" / "report.md"
    text = report.read_text() if report.exists() else ""
    promotion = clone / ".gitlab-ci-local" / "builds" / "evaluate" / "reports" / "promotion.json"
    verdict = json.loads(promotion.read_text()) if promotion.exists() else {}
    pipeline.checks = {
        "report.md written, against main": "What changed against `origin/main`" in text,
        "the gate ran as a dry run and compared with champion v1": bool(verdict.get("dry_run"))
        and (verdict.get("champion_before") or {}).get("version") == "1",
        "the report's plots exist": len(list((report.parent / "plots").glob("*.png"))) >= 4,
    }


def check_trigger(clone: Path, origin: Path, before: str, pipeline: Pipeline) -> None:
    after = git(origin, "rev-parse", "main").strip()
    changed = git(origin, "diff", "--name-only", before, after).split() if after != before else []
    options = (origin / "push-options").read_text() if (origin / "push-options").exists() else ""
    manifest = clone / ".gitlab-ci-local" / "builds" / "data" / "data" / "raw" / "manifest.json"
    extra = json.loads(manifest.read_text()).get("extra_rows") if manifest.exists() else None
    pipeline.checks = {
        f"ingest appended the {LABELLED_ROWS} labelled production rows": extra == LABELLED_ROWS,
        "commit-back pushed dvc.lock to main": "dvc.lock" in changed,
        "the push asked GitLab for no new pipeline (ci.skip)": "ci.skip" in options.split(),
    }


def main(
    gitlab_ci_local: Path = typer.Option(..., help="the gitlab-ci-local executable"),
    venv: Path = typer.Option(Path(".venv"), help="the installed venv the jobs use"),
    workdir: Path | None = typer.Option(None, help="keep the throwaway clone here"),
    only: str | None = typer.Option(None, help="merge_request or trigger (default: both)"),
    summary: Path | None = typer.Option(None, help="write the results as JSON here"),
) -> None:
    """Run the MR and the trigger pipelines of .gitlab-ci.yml locally; print each job's result."""
    root = workdir or Path(tempfile.mkdtemp(prefix="ci-local-"))
    root.mkdir(parents=True, exist_ok=True)
    venv, gitlab_ci_local = venv.resolve(), gitlab_ci_local.resolve()
    stamp = venv / ".installed-ci-local"
    stamp.touch()  # the jobs use this venv as it is: no install inside a job
    shared = {
        "VENV": str(venv),
        "INSTALL_STAMP": str(stamp),
        "DVC_REMOTE_URL": str(root / "dvc-remote"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CI_DEFAULT_BRANCH": "main",
    }
    typer.echo(f"throwaway clone in {root}")
    clone, origin = make_clone(root)
    typer.echo("setup: the default branch's champion (dvc repro, dvc push, commit)")
    started = time.monotonic()
    setup_champion(clone, venv, shared)
    typer.echo(f"setup: done in {time.monotonic() - started:.0f} s")
    results = []
    if only in (None, "merge_request"):
        git(clone, "checkout", "-q", "-b", "feature")
        params = yaml.safe_load((clone / "params.yaml").read_text())
        params["train"]["candidates"]["random_forest"]["regression"]["n_estimators"] = 120
        (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        git(clone, "commit", "-qam", "random forest: 120 trees")
        variables = {**shared, "CI_PIPELINE_SOURCE": "merge_request_event",
                     "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_MERGE_REQUEST_IID": "1"}  # fmt: skip
        pipeline = run_pipeline("merge_request", clone, gitlab_ci_local, venv, variables)
        check_merge_request(clone, pipeline)
        results.append(pipeline)
        git(clone, "checkout", "-q", "main")
    if only in (None, "trigger"):
        db = root / "predictions.db"
        labelled_log(clone, db, LABELLED_ROWS)
        before = git(origin, "rev-parse", "main").strip()
        variables = {**shared, "CI_PIPELINE_SOURCE": "trigger",
                     "MLOOP_PREDICTION_LOG_URL": f"sqlite:///{db}"}  # fmt: skip
        pipeline = run_pipeline("trigger", clone, gitlab_ci_local, venv, variables)
        check_trigger(clone, origin, before, pipeline)
        results.append(pipeline)
    failed = False
    for pipeline in results:
        print_pipeline(pipeline)
        failed |= pipeline.returncode != 0 or not all(pipeline.checks.values())
    if summary is not None:
        summary.write_text(json.dumps([pipeline.__dict__ for pipeline in results], indent=2))
    typer.echo(f"\nlogs: {root}/<kind>.log; {'FAILED' if failed else 'all jobs passed'}")
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    typer.run(main)
