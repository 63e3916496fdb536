"""CI glue the GitLab jobs call through make: the DVC remote, the gate's verdict, committing back.

``python -m mloop.ci remote``       configure the DVC remote from masked CI variables
``python -m mloop.ci promoted``     exit 0 if the last promote stage promoted (for real), else 1
``python -m mloop.ci commit-back``  commit dvc.lock and the stage outputs git tracks, push them
                                    with ``ci.skip`` (no new pipeline)

Secrets are read from the environment and written only to files outside the checkout; nothing
here prints them. See docs/ci.md for the variables.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import typer

from mloop.config import DEFAULT_PARAMS, load_config
from mloop.fileio import read_json

app = typer.Typer(add_completion=False, help=__doc__)
GDRIVE_REMOTE = "gdrive"  # the remote of .dvc/config whose credentials come from CI
CI_REMOTE = "ci"  # a remote given by URL (DVC_REMOTE_URL), for self-hosted storage


def _run(*command: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure exit with its message, the secret masked out of it."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        if secret:
            message = message.replace(secret, "[MASKED]")
        shown = " ".join(command if secret is None else (c.replace(secret, "***") for c in command))
        typer.echo(f"{shown} exited {result.returncode}: {message}", err=True)
        raise typer.Exit(result.returncode)
    return result


def _dvc(*args: str) -> subprocess.CompletedProcess[str]:
    return _run("dvc", *args)


@app.command()
def remote() -> None:
    """Point DVC at the team's remote: GDRIVE_CREDENTIALS_DATA, else DVC_REMOTE_URL, else none.

    The service account key (JSON, or its base64) goes to a private temp file, referenced from
    ``.dvc/config.local`` (never committed).
    """
    credentials = os.environ.get("GDRIVE_CREDENTIALS_DATA", "").strip()
    url = os.environ.get("DVC_REMOTE_URL", "").strip()
    if credentials:
        try:
            text = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            text = credentials  # stored as the JSON itself
        try:
            json.loads(text)
        except ValueError:
            typer.echo("GDRIVE_CREDENTIALS_DATA is neither JSON nor base64 of JSON", err=True)
            raise typer.Exit(2) from None
        handle, name = tempfile.mkstemp(prefix="gdrive-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as file:  # mkstemp: mode 0600
            file.write(text)
        _dvc("remote", "modify", "--local", GDRIVE_REMOTE, "gdrive_use_service_account", "true")
        _dvc(
            "remote", "modify", "--local", GDRIVE_REMOTE, "gdrive_service_account_json_file_path",
            name,
        )  # fmt: skip
        _dvc("remote", "default", "--local", GDRIVE_REMOTE)
        typer.echo(f"DVC remote: {GDRIVE_REMOTE} (service account from GDRIVE_CREDENTIALS_DATA)")
    elif url:
        _dvc("remote", "add", "--local", "--force", "--default", CI_REMOTE, url)
        typer.echo(f"DVC remote: {CI_REMOTE} ({_redact(url)})")
    else:
        typer.echo(
            "DVC remote: none configured (set GDRIVE_CREDENTIALS_DATA or DVC_REMOTE_URL): "
            "stage outputs pass between jobs only as artifacts and are not kept"
        )


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@app.command()
def promoted(
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", "-p", help="params file"),
) -> None:
    """Exit 0 when the last promote stage promoted a new champion (not in a dry run), else 1."""
    path = load_config(params).params.paths.promotion_report
    try:
        report = read_json(path)
    except (OSError, ValueError) as exc:
        typer.echo(f"no verdict: {path} unreadable ({exc})", err=True)
        raise typer.Exit(1) from None
    if report.get("decision") == "promoted" and not report.get("dry_run"):
        typer.echo(f"promoted: {report.get('reason')}")
        return
    typer.echo(f"not promoted ({report.get('decision')}): {report.get('reason')}")
    raise typer.Exit(1)


TRACKED_OUTPUTS = ["dvc.lock", "reports", "data/raw/manifest.json", "data/raw/source.json"]


@app.command("commit-back")
def commit_back(
    branch: str = typer.Option(
        ..., envvar="CI_COMMIT_BRANCH", help="branch to push to (the pipeline's own)"
    ),
    message: str = typer.Option("retrain: dvc.lock and reports from the pipeline", "--message"),
    push_url: str = typer.Option(
        "", envvar="MLOOP_PUSH_URL", help="git URL to push to (default: origin, with CI_PUSH_TOKEN)"
    ),
) -> None:
    """Commit dvc.lock and the outputs git tracks; push with ``-o ci.skip`` (no new pipeline).

    The token (``CI_PUSH_TOKEN``, a project access token with write_repository) is put in the
    push URL only, never in git's config or the output.
    """
    token = os.environ.get("CI_PUSH_TOKEN", "")
    existing = [path for path in TRACKED_OUTPUTS if Path(path).exists()]
    _run("git", "add", "--", *existing)
    if not _run("git", "diff", "--cached", "--name-only").stdout.strip():
        typer.echo("nothing to commit: the pipeline changed no tracked output")
        return
    author = ["-c", "user.name=mloop-ci", "-c", "user.email=mloop-ci@users.noreply.gitlab.com"]
    _run("git", *author, "commit", "--quiet", "-m", message)
    target = push_url or _origin_with_token(token)
    _run("git", "push", "-o", "ci.skip", target, f"HEAD:refs/heads/{branch}", secret=token or None)
    typer.echo(f"pushed {_run('git', 'rev-parse', '--short', 'HEAD').stdout.strip()} to {branch}")


def _origin_with_token(token: str) -> str:
    origin = _run("git", "remote", "get-url", "origin").stdout.strip()
    if not token:
        return origin
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return origin
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"oauth2:{quote(token, safe='')}@{host}"))


if __name__ == "__main__":
    app()
