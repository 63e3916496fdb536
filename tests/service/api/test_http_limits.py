"""The HTTP layer against clients that misbehave: slow, oversized, wrongly typed, or garbled.

A real server with short limits (1 s to send a request, 4 KB bodies), raw sockets for the clients
no HTTP library would be.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.bundles import make_bundle, valid_record
from tests.helpers.servers import FEEDBACK_AUTH, Server, start_server, stop_server

REQUEST_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("limits")
    running = start_server(
        root,
        make_bundle(root / "champion", version="1"),
        MLOOP_REQUEST_TIMEOUT_S=str(REQUEST_TIMEOUT_S),
        MLOOP_MAX_BODY_BYTES="4096",
        MLOOP_MAX_FEEDBACK_BODY_BYTES="2048",
    )
    yield running
    stop_server(running)


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def connect(server: Server, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(address(server), timeout=10)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def outcome(sock: socket.socket) -> bytes:
    """What the server did with a connection: its answer, then EOF (b"" if it just closed)."""
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except OSError as exc:  # a reset is a close too
        received += f"<{type(exc).__name__}>".encode()
    finally:
        sock.close()
    return received


def metric(server: Server, name: str) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_slow_clients_cannot_hold_the_server(strict: Server) -> None:
    before = metric(strict, "mloop_http_request_timeouts_total")
    body = b'{"age": 0.01, "sex": 0.02'  # of a declared 300 bytes
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slow = (
        [connect(strict, b"") for _ in range(20)]  # never send anything
        + [connect(strict, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty") for _ in range(90)]
        + [connect(strict, head + b"Content-Length: 300\r\n\r\n" + body) for _ in range(90)]
    )
    started = time.monotonic()
    with strict.client() as client:  # meanwhile, a well-behaved client is served
        while time.monotonic() - started < 2 * REQUEST_TIMEOUT_S:
            assert client.post("/predict", json=valid_record()).status_code == 200
    outcomes = [outcome(sock) for sock in slow]  # each returns once the server closes it
    waited = time.monotonic() - started
    assert waited < REQUEST_TIMEOUT_S + 10, "every slow connection was closed by the server"
    late_bodies = outcomes[110:]
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in late_bodies), late_bodies[0]
    assert all(b"connection: close" in answer for answer in late_bodies)
    assert metric(strict, "mloop_http_request_timeouts_total") - before == len(slow)


def test_bodies_over_the_limits_are_413_on_every_route(strict: Server) -> None:
    with strict.client(headers=FEEDBACK_AUTH) as client:
        predict = client.post("/predict", json=[valid_record()] * 20)  # ~5 KB > 4 KB
        items = [{"id": f"id-{n}", "actual": 1.0} for n in range(100)]  # ~3 KB > 2 KB
        feedback = client.post("/feedback", json={"items": items})
        health = client.request("GET", "/health", content=b"x" * 3000)
    assert predict.status_code == feedback.status_code == health.status_code == 413
    assert "larger than 4096 bytes" in predict.json()["detail"][0]["msg"]
    assert "larger than 2048 bytes" in feedback.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 415), ({"content-type": "application/x-www-form-urlencoded"}, 415),
     ({"content-type": "text/plain"}, 415), ({"content-type": "application/json"}, 200),
     ({"content-type": "Application/JSON; charset=utf-8"}, 200)],
    ids=["none", "form", "text", "json", "json-with-charset"],
)  # fmt: skip
def test_predict_takes_json_only(strict: Server, headers: dict[str, str], status: int) -> None:
    import json

    with strict.client() as client:
        response = client.post("/predict", content=json.dumps(valid_record()), headers=headers)
    assert response.status_code == status, response.text
    if status == 415:
        assert response.json()["detail"][0]["loc"] == ["header", "content-type"]


def test_garbled_requests_do_not_flood_the_log(strict: Server) -> None:
    for _ in range(300):
        assert outcome(connect(strict, b"FOO /predict HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(
            b"HTTP/1.1 400"
        )
    time.sleep(0.3)
    lines = [x for x in strict.output().splitlines() if "Invalid HTTP request" in x]
    assert 1 <= len(lines) <= 2, lines[:5]


def test_several_workers_leave_no_metrics_folder_behind(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    bundle = make_bundle(tmp_path / "champion", version="1")
    server = start_server(
        tmp_path, bundle, workers=2, PROMETHEUS_MULTIPROC_DIR="", TMPDIR=str(scratch)
    )
    try:
        made = [p.name for p in scratch.iterdir() if p.name.startswith("mloop-prom-")]
        assert len(made) == 1, "the workers share a folder of their own"
        with server.client() as client:
            assert client.post("/predict", json=valid_record()).status_code == 200
    finally:
        stop_server(server)
    assert server.process.returncode == 0
    assert not [p for p in scratch.iterdir() if p.name.startswith("mloop-prom-")]
