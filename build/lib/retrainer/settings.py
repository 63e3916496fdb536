"""Retrainer configuration, from the environment only (prefix ``MLOOP_RETRAINER_``).

The webhook token is ``MLOOP_RETRAINER_TOKEN`` or the file named by ``MLOOP_RETRAINER_TOKEN_FILE``
(the secret Alertmanager's ``credentials_file`` reads too); without one the webhook is disabled
(403). GitLab's trigger token comes the same way (``..._GITLAB_TRIGGER_TOKEN[_FILE]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

RETRAIN_ALERTS = ("FeatureDrift", "LiveErrorAboveHoldout", "LiveErrorRateAboveHoldout")


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    """The secret from its variable, else from its file (stripped); None if neither is set."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if file is not None:
        text = file.read_text(encoding="utf-8").strip()
        return text or None
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOOP_RETRAINER_", frozen=True)

    token: SecretStr | None = None
    token_file: Path | None = None
    alerts: tuple[str, ...] = Field(
        RETRAIN_ALERTS, description="firing alerts that ask for a retrain; others are ignored"
    )
    cooldown_s: float = Field(
        1800.0, ge=0, description="after a retrain ends, alerts are skipped for this long"
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest webhook body")
    decisions_kept: int = Field(500, ge=1, description="decisions listed by GET /decisions")
    backend: Literal["local", "gitlab"] = "local"
    # local: the checkout the pipeline runs in, and the prediction log its new rows come from
    repo_dir: Path = Path(".")
    prediction_log_url: str = "sqlite:///predictions.db"
    bundle_dir: Path = Path("models/champion")
    export_file: Path = Field(
        Path("data/feedback/production.parquet"),
        description="the labelled production rows, rewritten whole by each export (never appended)",
    )
    timeout_s: float = Field(1800.0, gt=0, description="a local retrain is stopped after this")
    # gitlab: the project's retrain pipeline, started through the pipeline trigger API
    gitlab_url: str = "https://gitlab.com"
    gitlab_project_id: str | None = None
    gitlab_ref: str = "main"
    gitlab_trigger_token: SecretStr | None = None
    gitlab_trigger_token_file: Path | None = None
    gitlab_timeout_s: float = Field(30.0, gt=0)

    def webhook_token(self) -> str | None:
        return read_secret(self.token, self.token_file)

    def trigger_token(self) -> str | None:
        return read_secret(self.gitlab_trigger_token, self.gitlab_trigger_token_file)
