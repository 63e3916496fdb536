"""POST /feedback against a real server: the labels the next model learns from.

Only authenticated clients label, only the target's type and range are stored, a prediction keeps
its first label, and no body can make the route answer 5xx or echo a large input back.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.bundles import make_bundle, valid_record
from tests.helpers.servers import ADMIN_TOKEN, FEEDBACK_AUTH, Server, start_server, stop_server


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("feedback")
    running = start_server(root, make_bundle(root / "champion", version="1"))
    yield running
    stop_server(running)


def predict_id(client: httpx.Client) -> str:
    answer = client.post("/predict", json=valid_record())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def send(client: httpx.Client, raw: bytes) -> httpx.Response:
    return client.post("/feedback", content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"])
def test_a_non_finite_label_is_a_4xx_never_a_5xx(labelled: Server, token: str) -> None:
    with labelled.client(headers=FEEDBACK_AUTH) as client:
        prediction = predict_id(client)
        response = send(client, f'{{"items":[{{"id":"{prediction}","actual":{token}}}]}}'.encode())
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("actual", "fragment"),
    [
        (True, "Expected `float`, got `bool`"),
        ("0.01", "Expected `float`, got `str`"),
        (None, "Expected `float`, got `null`"),
        (400.5, "outside the target's range [0, 400]"),
        (-1, "outside the target's range [0, 400]"),
    ],
    ids=["bool", "text", "null", "above-max", "below-min"],
)
def test_a_label_of_another_type_or_out_of_range_is_a_422_and_stores_nothing(
    labelled: Server, actual: object, fragment: str
) -> None:
    with labelled.client(headers=FEEDBACK_AUTH) as client:
        prediction = predict_id(client)
        response = client.post("/feedback", json={"items": [{"id": prediction, "actual": actual}]})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "items", 0, "actual"] and fragment in detail["msg"]
        # nothing was stored: a valid label for the same prediction is its first
        valid = client.post("/feedback", json={"items": [{"id": prediction, "actual": 100}]})
    assert valid.json()["accepted"] == 1


def test_feedback_needs_a_token_and_takes_the_feedback_or_the_admin_one(labelled: Server) -> None:
    with labelled.client() as client:
        prediction = predict_id(client)
        body = {"items": [{"id": prediction, "actual": 10.0}]}
        missing = client.post("/feedback", json=body)
        wrong = client.post("/feedback", json=body, headers={"Authorization": "Bearer nope"})
        admin = client.post(
            "/feedback", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert admin.status_code == 200 and admin.json()["accepted"] == 1


def test_a_second_label_never_overwrites_the_first_and_conflicts_are_counted(
    labelled: Server,
) -> None:
    with labelled.client(headers=FEEDBACK_AUTH) as client:
        prediction = predict_id(client)
        first = client.post("/feedback", json={"items": [{"id": prediction, "actual": 120.0}]})
        again = client.post("/feedback", json={"items": [{"id": prediction, "actual": 120}]})
        other = client.post("/feedback", json={"items": [{"id": prediction, "actual": 50.0}]})
        text = client.get("/metrics").text
    assert first.json()["accepted"] == 1
    assert again.json() == {
        "accepted": 0, "unchanged": 1, "unknown_ids": [], "conflicting_ids": []
    }  # fmt: skip
    assert other.json() == {
        "accepted": 0, "unchanged": 0, "unknown_ids": [], "conflicting_ids": [prediction]
    }  # fmt: skip
    assert re.search(r'^mloop_feedback_total\{result="conflict"\} [1-9]', text, re.M)
    assert re.search(r'^mloop_feedback_total\{result="unchanged"\} [1-9]', text, re.M)


def test_prediction_ids_cannot_be_guessed_from_ones_own(labelled: Server) -> None:
    with labelled.client(headers=FEEDBACK_AUTH) as client:
        ids = [predict_id(client) for _ in range(20)]
        batch = client.post("/predict", json=[valid_record()] * 3).json()["ids"]
        # the old scheme: a shared prefix and a counter; the next id followed from the last one
        prefix, counter = ids[-1][:17], int(ids[-1][17:29], 16)
        guesses = [f"{prefix}{counter + step:012x}" for step in range(1, 6)]
        guessed = client.post(
            "/feedback", json={"items": [{"id": g, "actual": 1.0} for g in guesses]}
        ).json()
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{28}", i) for i in ids)
    tags = {i[-16:] for i in ids}
    assert len(tags) == len(ids), "each request draws its own random tag"
    assert batch == [f"{batch[0][:-2]}-{row}" for row in range(3)]
    assert guessed["unknown_ids"] == guesses and guessed["accepted"] == 0


@pytest.mark.parametrize(
    ("content_type", "body"),
    [(None, b'{"items":[]}'), ("application/x-www-form-urlencoded", b"items=1"),
     ("text/plain", b'{"items":[]}')],
    ids=["none", "form", "text"],
)  # fmt: skip
def test_feedback_takes_json_only(labelled: Server, content_type: str | None, body: bytes) -> None:
    headers = {**FEEDBACK_AUTH, **({"content-type": content_type} if content_type else {})}
    with labelled.client() as client:
        response = client.post("/feedback", content=body, headers=headers)
    assert response.status_code == 415, response.text


def test_a_repeated_key_is_refused(labelled: Server) -> None:
    with labelled.client(headers=FEEDBACK_AUTH) as client:
        prediction = predict_id(client)
        raw = f'{{"items":[{{"id":"{prediction}","actual":1.0,"actual":2.0}}]}}'.encode()
        response = send(client, raw)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "duplicate_key"


def test_an_error_never_echoes_a_large_input(labelled: Server) -> None:
    huge_id = "x" * 1_500_000  # within the 2 MB body limit, far beyond an id's 100 characters
    with labelled.client(headers=FEEDBACK_AUTH) as client:
        response = client.post("/feedback", json={"items": [{"id": huge_id, "actual": 1.0}]})
    assert response.status_code == 422
    assert len(response.content) < 2_000, len(response.content)


def test_a_body_over_the_limit_is_refused_before_it_is_read(labelled: Server) -> None:
    """Only the headers are sent: a server that waited to read (or parse) 50 MB would not answer."""
    host, port = labelled.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {FEEDBACK_AUTH['Authorization'][7:]}\r\n".encode()
            + b"Content-Length: 52428800\r\n\r\n"
            + b'{"items":['
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()


def test_feedback_is_disabled_without_a_token(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "champion", version="1")
    server = start_server(tmp_path, bundle, MLOOP_ADMIN_TOKEN="", MLOOP_FEEDBACK_TOKEN="")
    try:
        with server.client() as client:
            prediction = predict_id(client)
            body = {"items": [{"id": prediction, "actual": 1.0}]}
            response = client.post("/feedback", json=body, headers=FEEDBACK_AUTH)
            reload = client.post("/admin/reload", headers=FEEDBACK_AUTH)
    finally:
        stop_server(server)
    assert response.status_code == reload.status_code == 403
