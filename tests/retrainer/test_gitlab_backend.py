"""The gitlab backend against a local server that checks each request as GitLab's pipeline trigger
API does (path, method, token, ref) and answers as GitLab does, errors included."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from retrainer.backends.gitlab import GitLabBackend
from retrainer.settings import Settings
from tests.helpers.net import free_port
from tests.helpers.servers import http_server_thread

PROJECT = "data-team/wine-quality"  # a path works like a numeric id, URL-encoded
TRIGGER_TOKEN = "glptt-0123456789abcdef"
REFS = {"main", "release"}


class FakeGitLab(BaseHTTPRequestHandler):
    requests: list[dict[str, object]] = []

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the trigger endpoint takes POST only
        self._answer(404, {"error": "404 Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        self.requests.append(
            {"path": self.path, "form": form, "type": self.headers["Content-Type"]}
        )
        if self.path != "/api/v4/projects/data-team%2Fwine-quality/trigger/pipeline":
            return self._answer(404, {"message": "404 Project Not Found"})
        if form.get("token") != TRIGGER_TOKEN:
            return self._answer(404, {"message": "404 Not Found"})
        if "ref" not in form:
            return self._answer(400, {"error": "ref is missing"})
        if form["ref"] not in REFS:
            return self._answer(400, {"message": {"base": ["Reference not found"]}})
        self._answer(
            201,
            {
                "id": 4711, "iid": 12, "project_id": 42, "sha": "a" * 40, "ref": form["ref"],
                "status": "created", "source": "trigger",
                "web_url": "https://gitlab.example.com/data-team/wine-quality/-/pipelines/4711",
            },
        )  # fmt: skip


@pytest.fixture
def gitlab() -> Iterator[str]:
    FakeGitLab.requests = []
    with http_server_thread(FakeGitLab) as url:
        yield url


def backend(url: str, **overrides: object) -> GitLabBackend:
    values: dict[str, object] = {
        "backend": "gitlab", "gitlab_url": url, "gitlab_project_id": PROJECT,
        "gitlab_trigger_token": TRIGGER_TOKEN, "gitlab_ref": "main", **overrides,
    }  # fmt: skip
    return GitLabBackend(Settings(**values))  # type: ignore[arg-type]


def test_a_retrain_creates_the_pipeline_with_token_and_ref_only(gitlab: str) -> None:
    outcome = backend(gitlab).run("alerts: FeatureDrift(alcohol)")
    assert outcome.ok and outcome.detail == "pipeline 4711 created on main"
    assert outcome.link == "https://gitlab.example.com/data-team/wine-quality/-/pipelines/4711"
    (request,) = FakeGitLab.requests
    assert request["type"] == "application/x-www-form-urlencoded"
    assert request["form"] == {"token": TRIGGER_TOKEN, "ref": "main"}, "no pipeline variables"


def test_the_token_may_come_from_a_file(gitlab: str, tmp_path: Path) -> None:
    secret = tmp_path / "trigger_token"
    secret.write_text(TRIGGER_TOKEN + "\n")
    outcome = backend(gitlab, gitlab_trigger_token=None, gitlab_trigger_token_file=secret).run("x")
    assert outcome.ok


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"gitlab_trigger_token": "wrong"}, "GitLab answered 404: 404 Not Found"),
        (
            {"gitlab_ref": "no-such-branch"},
            "GitLab answered 400: {'base': ['Reference not found']}",
        ),
        ({"gitlab_project_id": "other/project"}, "GitLab answered 404: 404 Project Not Found"),
    ],
    ids=["wrong-token", "unknown-ref", "unknown-project"],
)
def test_gitlab_refusals_are_failed_retrains_with_gitlabs_reason(
    gitlab: str, overrides: dict[str, object], detail: str
) -> None:
    outcome = backend(gitlab, **overrides).run("x")
    assert not outcome.ok and outcome.detail == detail
    assert "wrong" not in outcome.detail and TRIGGER_TOKEN not in outcome.detail


def test_an_unreachable_gitlab_is_a_failed_retrain() -> None:
    outcome = backend(f"http://127.0.0.1:{free_port()}", gitlab_timeout_s=2).run("x")
    assert not outcome.ok and outcome.detail.startswith("GitLab unreachable: ConnectError")


def test_the_backend_refuses_to_start_without_project_or_token() -> None:
    with pytest.raises(ValueError, match="GITLAB_PROJECT_ID"):
        GitLabBackend(Settings(backend="gitlab"))
    with pytest.raises(ValueError, match="GITLAB_TRIGGER_TOKEN"):
        GitLabBackend(Settings(backend="gitlab", gitlab_project_id="42"))
