"""Schema-driven fuzzing of the OpenAPI document with schemathesis: no input may cause a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.service.service_fixtures import ADMIN_TOKEN, Server


def test_openapi_fuzz_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
            "--checks", "not_a_server_error",
            "--max-examples", "60",
            "--seed", "1",
            "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
            "--request-timeout", "10",
        ],  # fmt: skip
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output
    # the fuzzer really reached the hot path, with valid and invalid bodies
    with server.client() as client:
        text = client.get("/metrics").text
    for status in ("2xx", "4xx"):
        line = f'mloop_http_requests_total{{method="POST",route="/predict",status="{status}"}}'
        count = next(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))
        assert count >= 10, (status, count)
    assert 'status="5xx"' not in text
