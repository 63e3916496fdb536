"""Service configuration, from the environment only (prefix ``MLOOP_``): twelve-factor, no secrets in files.

The admin token is read from ``MLOOP_ADMIN_TOKEN`` or from the file named by ``MLOOP_ADMIN_TOKEN_FILE``
(a mounted secret); it is never logged. Without a token, the reload endpoint is disabled (403).
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
    max_batch_rows: int = Field(10_000, ge=1)
    native_batch_min_rows: int = Field(
        1_000,
        ge=1,
        description="batches this large use the native model when the bundle measured it faster",
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
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
        if self.admin_token is not None:
            return self.admin_token.get_secret_value()
        if self.admin_token_file is not None and self.admin_token_file.is_file():
            return self.admin_token_file.read_text(encoding="utf-8").strip() or None
        return None
