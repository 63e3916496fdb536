"""Service configuration, from the environment only (prefix ``MLOOP_``): twelve-factor, no secrets in files.

Tokens are read from ``MLOOP_<NAME>_TOKEN`` or from the file named by ``MLOOP_<NAME>_TOKEN_FILE`` (a
mounted secret) and are never logged. The admin token guards ``POST /admin/reload``; the feedback
token guards ``POST /feedback`` (the admin token is accepted there too). An endpoint whose token is
not configured is disabled (403): every endpoint that changes state is authenticated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOOP_", frozen=True)

    bundle_dir: Path = Path("models/champion")
    prediction_log_url: str = "sqlite:///predictions.db"
    prediction_log_enabled: bool = True
    prediction_log_queue_rows: int = Field(100_000, ge=1)
    prediction_log_flush_interval_s: float = Field(
        1.0, gt=0, description="how often queued predictions are handed to the writer process"
    )
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    feedback_token: SecretStr | None = None
    feedback_token_file: Path | None = None
    max_batch_rows: int = Field(10_000, ge=1)
    native_batch_min_rows: int = Field(
        1_000,
        ge=1,
        description="batches this large use the native model when the bundle measured it faster",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="largest /predict body (a 10,000-row batch: ~3 MB)"
    )
    max_feedback_body_bytes: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        description="largest body of every other route (10,000 feedback items: ~0.7 MB)",
    )
    max_feedback_items: int = Field(10_000, ge=1)
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="a request's line, headers and body must all arrive within this (else 408)",
    )
    keep_alive_timeout_s: int = Field(
        5, ge=1, description="an idle keep-alive connection is closed after this long"
    )
    out_of_range: Literal["reject", "flag"] = "reject"
    drift_window: int = Field(
        1_000, ge=10, description="recent rows the drift gauges are computed on"
    )
    quality_window_s: float = Field(
        3600.0, gt=0, description="feedback window of the live-error gauges"
    )
    watch_interval_s: float = Field(
        2.0, ge=0, description="bundle polling period; 0 disables watching"
    )
    housekeeping_interval_s: float = Field(1.0, gt=0)
    metrics_enabled: bool = True

    def resolved_admin_token(self) -> str | None:
        return _resolve(self.admin_token, self.admin_token_file)

    def resolved_feedback_tokens(self) -> list[str]:
        """The tokens /feedback accepts: its own and the admin token (empty: disabled)."""
        tokens = (
            _resolve(self.feedback_token, self.feedback_token_file),
            self.resolved_admin_token(),
        )
        return [token for token in tokens if token]


def _resolve(token: SecretStr | None, file: Path | None) -> str | None:
    if token is not None:
        return token.get_secret_value() or None
    if file is not None and file.is_file():
        return file.read_text(encoding="utf-8").strip() or None
    return None
