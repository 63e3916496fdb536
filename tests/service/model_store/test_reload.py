"""Zero-downtime reload: bundles swapped on disk while requests flow; bad bundles are refused."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from mloop.bundle import _exchange
from tests.helpers.bundles import make_bundle, valid_record
from tests.helpers.net import wait_until
from tests.helpers.paths import DIABETES_SCHEMA
from tests.helpers.servers import ADMIN_TOKEN, Server, start_server, stop_server

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("reload")
    bundle = make_bundle(root / "champion", version="1")
    running = start_server(root, bundle)
    yield running, bundle
    stop_server(running)


class Traffic:
    """Requests in a loop from another thread, recording every status and model version."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.server.client() as client:
            while not self._stop.is_set():
                try:
                    response = client.post("/predict", json=valid_record())
                except httpx.HTTPError as exc:  # a dropped connection is a failed request
                    self.errors.append(repr(exc))
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.versions[response.json()["model_version"]] += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_for_version(server: Server, version: str) -> None:
    with server.client() as client:
        shown = wait_until(lambda: client.get("/model").json()["version"] == version, 10, 0.1)
    assert shown, f"/model never showed version {version}"


def swap_in(bundle: Path, replacement: Path) -> None:
    """Publish a prepared directory the way the pipeline does: one atomic exchange of directories."""
    assert _exchange(replacement, bundle)
    shutil.rmtree(replacement)


def test_new_bundle_is_picked_up_while_requests_flow(live: tuple[Server, Path]) -> None:
    server, bundle = live
    with Traffic(server) as traffic:
        threading.Event().wait(0.5)
        make_bundle(bundle, version="2", kind="extra_trees", hyperparameters={"n_estimators": 20})
        wait_for_version(server, "2")
        threading.Event().wait(0.5)
    assert traffic.errors == []
    assert set(traffic.statuses) == {200}, traffic.statuses
    assert traffic.versions["1"] > 0 and traffic.versions["2"] > 0
    with server.client() as client:
        assert client.get("/model").json()["candidate"] == "extra_trees"


def test_corrupted_bundle_is_refused_and_the_old_model_keeps_serving(
    live: tuple[Server, Path], tmp_path: Path
) -> None:
    server, bundle = live
    with server.client() as client:
        before = client.get("/model").json()["version"]
    broken = make_bundle(tmp_path / "broken", version="99")
    for model_file in (broken / "model").glob("model.*"):
        if model_file.suffix != ".json":
            model_file.write_bytes(b"\x00 not a model")
    staged = bundle.parent / ".champion.broken"
    shutil.copytree(broken, staged)
    with Traffic(server) as traffic:
        swap_in(bundle, staged)
        threading.Event().wait(1.0)  # several watcher ticks
    assert traffic.errors == [] and set(traffic.statuses) == {200}
    with server.client() as client:
        assert client.get("/model").json()["version"] == before
        assert client.get("/ready").status_code == 200
        refused = client.post("/admin/reload", headers=AUTH)
        assert refused.status_code == 409 and "refused" in refused.json()["detail"]
        metrics = client.get("/metrics").text
    assert 'mloop_model_reloads_total{result="failure"}' in metrics

    # a good bundle after the bad one is served again
    make_bundle(bundle, version="3")
    wait_for_version(server, "3")


def test_bundle_with_other_features_is_refused(live: tuple[Server, Path], tmp_path: Path) -> None:
    server, bundle = live
    with server.client() as client:
        before = client.get("/model").json()["version"]
    schema = yaml.safe_load(DIABETES_SCHEMA.read_text())
    del schema["columns"]["s6"]
    other_schema = tmp_path / "diabetes-without-s6.yaml"
    other_schema.write_text(yaml.safe_dump(schema, sort_keys=False))
    staged = make_bundle(bundle.parent / ".champion.other", version="42", schema_file=other_schema)
    swap_in(bundle, staged)
    with server.client() as client:
        refused = client.post("/admin/reload", headers=AUTH)
        assert refused.status_code == 409 and "features differ" in refused.json()["detail"]
        assert client.get("/model").json()["version"] == before
        assert client.post("/predict", json=valid_record()).status_code == 200


def failures(server: Server) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    line = next(
        (
            x
            for x in text.splitlines()
            if x.startswith('mloop_model_reloads_total{result="failure"}')
        ),
        None,
    )
    return float(line.split()[-1]) if line else 0.0


@pytest.mark.parametrize(
    ("file", "content", "reason"),
    [
        ("bundle.json", "123", "bundle.json is not a JSON object"),
        ("bundle.json", "null", "bundle.json is not a JSON object"),
        ("reference_stats.json", "[]", "reference_stats.json is malformed"),
    ],
    ids=["meta-number", "meta-null", "reference-list"],
)
def test_a_malformed_bundle_is_refused_counted_and_the_watcher_keeps_going(
    live: tuple[Server, Path], tmp_path: Path, file: str, content: str, reason: str
) -> None:
    server, bundle = live
    with server.client() as client:
        before = client.get("/model").json()["version"]
    counted = failures(server)
    staged = make_bundle(bundle.parent / ".champion.malformed", version="77")
    (staged / file).write_text(content, encoding="utf-8")
    swap_in(bundle, staged)
    threading.Event().wait(0.6)  # watcher ticks: it refuses the bundle (once) and lives on
    with server.client() as client:
        refused = client.post("/admin/reload", headers=AUTH)
        assert refused.status_code == 409, refused.text
        assert reason in refused.json()["detail"]
        assert client.get("/model").json()["version"] == before
        assert client.post("/predict", json=valid_record()).status_code == 200
    assert failures(server) >= counted + 2, "the watcher's refusal and the admin's both count"
    replacement = str(int(before) + 100)
    make_bundle(bundle, version=replacement)  # the watcher, still alive, picks it up
    wait_for_version(server, replacement)


def test_a_model_file_from_another_bundle_is_refused(
    live: tuple[Server, Path], tmp_path: Path
) -> None:
    """The audit's case: another candidate's model.onnx copied in under the served version."""
    server, bundle = live
    with server.client() as client:
        before = client.get("/model").json()["version"]
    other = make_bundle(tmp_path / "other", version="5", target_offset=1000.0)
    staged = bundle.parent / ".champion.copied"
    shutil.copytree(bundle, staged)
    shutil.copyfile(other / "model" / "model.onnx", staged / "model" / "model.onnx")
    swap_in(bundle, staged)
    with server.client() as client:
        refused = client.post("/admin/reload", headers=AUTH)
        assert refused.status_code == 409
        assert "model/model.onnx does not match its recorded sha256" in refused.json()["detail"]
        assert client.get("/model").json()["version"] == before


def test_without_a_model_ready_names_no_path_or_library_error(tmp_path: Path) -> None:
    empty = tmp_path / "no-bundle-yet"
    server = start_server(tmp_path, empty, ready=False)
    try:
        with server.client() as client:
            absent = client.get("/ready")
            empty.mkdir()
            (empty / "bundle.json").write_text("[]", encoding="utf-8")
            client.post("/admin/reload", headers=AUTH)
            refused = client.get("/ready")
    finally:
        stop_server(server)
    assert absent.status_code == refused.status_code == 503
    assert absent.json() == {"status": "not ready", "reason": "no model loaded"}
    assert refused.json()["reason"] == "the bundle was refused (the reason is in the service's log)"
    assert str(tmp_path) not in absent.text + refused.text
    assert "not a JSON object" in server.output(), "the detail is in the log"
