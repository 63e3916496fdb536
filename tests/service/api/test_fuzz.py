"""Schema-driven fuzzing of the OpenAPI document with schemathesis, every check on: the service does
what its document says (status codes, content types, response schemas, auth, schema-violating
requests refused, schema-conforming ones accepted), for a regression and a classification model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.bundles import make_bundle
from tests.helpers.paths import DIABETES_SCHEMA, IRIS_SCHEMA
from tests.helpers.servers import ADMIN_TOKEN, start_server, stop_server


@pytest.mark.parametrize("schema", [DIABETES_SCHEMA, IRIS_SCHEMA], ids=["regression", "classes"])
def test_openapi_fuzz_finds_no_failure_of_any_check(tmp_path: Path, schema: Path) -> None:
    bundle = make_bundle(tmp_path / "champion", version="1", schema_file=schema)
    server = start_server(tmp_path, bundle)
    try:
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
                "--checks", "all",
                "--max-examples", "60",
                "--seed", "1",
                "--header", f"Authorization: Bearer {ADMIN_TOKEN}",  # /feedback takes it too
                "--request-timeout", "10",
            ],  # fmt: skip
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        with server.client() as client:
            text = client.get("/metrics").text
    finally:
        stop_server(server)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output, output[-6000:]
    # the fuzzer really reached the hot path and the labels, with valid and invalid bodies
    reached = [("/predict", "2xx", 10), ("/predict", "4xx", 10), ("/feedback", "2xx", 1),
               ("/feedback", "4xx", 10)]  # fmt: skip
    for route, status, least in reached:
        line = f'mloop_http_requests_total{{method="POST",route="{route}",status="{status}"}}'
        count = next(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))
        assert count >= least, (route, status, count)
    assert 'status="5xx"' not in text
