"""The ``local`` backend: export the labelled production rows, ``dvc repro``, read the gate's verdict.

The service watches its bundle folder, so a promoted champion is served without a call from here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from mloop.config import load_config
from retrainer.backends import Outcome
from retrainer.settings import Settings

log = logging.getLogger("retrainer")
EXPORT_NAME = "production.parquet"  # rewritten whole by every export: rows are never appended twice


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.repo = settings.repo_dir.resolve()
        self.log_url = settings.prediction_log_url
        self.bundle_dir = settings.bundle_dir
        self.timeout_s = settings.timeout_s

    def steps(self) -> list[tuple[str, list[str]]]:
        """The commands of one retrain, run in order in the checkout."""
        params = load_config(self.repo / "params.yaml").params
        out = params.ingest.extra_rows / EXPORT_NAME
        export = [
            sys.executable, "-m", "service.prediction_log", "export", "--db", self.log_url,
            "--bundle", str(self.bundle_dir), "--out", str(out),
        ]  # fmt: skip
        return [("export", export), ("dvc repro", [sys.executable, "-m", "dvc", "repro"])]

    def run(self, reason: str) -> Outcome:
        deadline = time.monotonic() + self.timeout_s
        try:
            steps = self.steps()
            promotion = (
                self.repo / load_config(self.repo / "params.yaml").params.paths.promotion_report
            )
        except Exception as exc:  # noqa: BLE001 - a broken checkout is a failed retrain, reported
            return Outcome(False, f"cannot read the pipeline's params: {exc}")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name, command in steps:
            remaining = deadline - time.monotonic()
            log.info("retrain (%s): %s", reason, name)
            try:
                result = subprocess.run(
                    command, cwd=self.repo, env=env, capture_output=True, text=True,
                    timeout=max(remaining, 1.0),
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return Outcome(False, f"{name} did not finish within {self.timeout_s:g} s")
            if result.returncode != 0:
                lines = (result.stderr or result.stdout).strip().splitlines()
                return Outcome(
                    False, f"{name} exited {result.returncode}: {lines[-1] if lines else ''}"
                )
        return self._verdict(promotion)

    @staticmethod
    def _verdict(path: Path) -> Outcome:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return Outcome(False, f"dvc repro ran but {path} is unreadable: {exc}")
        promoted = report.get("decision") == "promoted"
        return Outcome(True, f"{report.get('decision')}: {report.get('reason')}", promoted=promoted)
