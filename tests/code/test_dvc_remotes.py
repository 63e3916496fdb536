"""The DVC remotes a team gets: a local default and a Google Drive remote using a service account."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.paths import REPO


def dvc(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_local_remote_is_the_default() -> None:
    assert dvc("config", "core.remote").strip() == "local"
    assert "local" in dvc("remote", "list")


def test_gdrive_remote_uses_a_service_account_without_committed_secrets() -> None:
    assert "gdrive://" in dvc("remote", "list")
    assert dvc("config", "remote.gdrive.gdrive_use_service_account").strip() == "true"
    committed = (REPO / ".dvc/config").read_text()
    for secret_key in ("gdrive_service_account_json_file_path", "client_secret", "private_key"):
        assert secret_key not in committed


def test_gdrive_plugin_imports_with_the_pinned_crypto_stack() -> None:
    # Without cryptography<44 and pyOpenSSL<=24.2.1 pip picks versions with which this import fails.
    result = subprocess.run(
        [sys.executable, "-c", "import pydrive2.fs, dvc_gdrive; print('ok')"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
