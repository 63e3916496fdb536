"""The ``gitlab`` backend: start the project's retrain pipeline with GitLab's pipeline trigger API.

``POST /api/v4/projects/:id/trigger/pipeline`` with the trigger token and the ref, and no pipeline
variables: newer GitLab versions may refuse them, so the retrain job is selected by
``$CI_PIPELINE_SOURCE == "trigger"`` alone. The pipeline exports, retrains and deploys itself.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from retrainer.backends import Outcome
from retrainer.settings import Settings


class GitLabBackend:
    name = "gitlab"

    def __init__(self, settings: Settings) -> None:
        if not settings.gitlab_project_id:
            raise ValueError("the gitlab backend needs MLOOP_RETRAINER_GITLAB_PROJECT_ID")
        token = settings.trigger_token()
        if not token:
            raise ValueError(
                "the gitlab backend needs MLOOP_RETRAINER_GITLAB_TRIGGER_TOKEN (or _TOKEN_FILE)"
            )
        self._token = token
        project = quote(
            settings.gitlab_project_id, safe=""
        )  # "group/project" works as well as an id
        self.url = f"{settings.gitlab_url.rstrip('/')}/api/v4/projects/{project}/trigger/pipeline"
        self.ref = settings.gitlab_ref
        self.timeout_s = settings.gitlab_timeout_s

    def run(self, reason: str) -> Outcome:
        try:
            response = httpx.post(
                self.url, data={"token": self._token, "ref": self.ref}, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            return Outcome(False, f"GitLab unreachable: {type(exc).__name__}: {exc}")
        if response.status_code != 201:
            return Outcome(False, f"GitLab answered {response.status_code}: {_message(response)}")
        body = response.json()
        return Outcome(
            True, f"pipeline {body.get('id')} created on {self.ref}", link=body.get("web_url")
        )


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:200]
    return str(body)[:200]
