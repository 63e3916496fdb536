"""The prediction page in a real browser: Debian's chromium, driven by Playwright, against a real
server process with a trained bundle. The page must answer what POST /predict answers, and show
the API's own messages for bad input.

Needs chromium (``make system-deps``): without it these tests fail, they do not skip. Set
``MLOOP_PAGE_SCREENSHOT=docs/prediction-page.png`` to save the page with a prediction shown.
"""

from __future__ import annotations

import csv
import html
import io
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sklearn.datasets import load_iris

from mloop import sources
from mloop.config import load_schema
from mloop.reference import compute_reference
from tests.helpers.bundles import make_bundle
from tests.helpers.paths import IRIS_SCHEMA, TIPS_SCHEMA
from tests.helpers.servers import Server, start_server, stop_server

IRIS_FEATURES = load_schema(IRIS_SCHEMA).features
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
WIDTH = 1000  # the screenshot's width, and the page's
BODY_LIMIT = 2 * 1024 * 1024  # MLOOP_MAX_FEEDBACK_BODY_BYTES's default: uploads share it
MAX_ROWS = 10_000  # MLOOP_MAX_BATCH_ROWS's default (the other service tests take 50)


def chromium_binary() -> str:
    """Debian's chromium (or MLOOP_CHROMIUM): Playwright's own browser download is not used."""
    found = os.environ.get("MLOOP_CHROMIUM") or shutil.which("chromium")
    if not found or not Path(found).exists():
        pytest.fail(
            "chromium is not installed: `make system-deps` installs Debian's package "
            "(apt-get install chromium), or set MLOOP_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_binary()
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": WIDTH, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(15_000)
    yield opened
    context.close()


@pytest.fixture(scope="module")
def iris_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("iris-page")
    bundle = make_bundle(root / "champion", "1", schema_file=IRIS_SCHEMA)
    running = start_server(root, bundle, MLOOP_MAX_BATCH_ROWS=str(MAX_ROWS))
    yield running
    stop_server(running)


def flowers(*rows: int) -> list[dict[str, float]]:
    frame = load_iris(as_frame=True).frame
    return [{name: float(frame.iloc[row][name]) for name in IRIS_FEATURES} for row in rows]


def api(server: Server, body: Any) -> httpx.Response:
    with server.client() as client:
        return client.post("/predict", json=body)


def field(page: Page, name: str) -> Any:
    return page.get_by_label(name, exact=True)


def submit(page: Page, button: str) -> int:
    """Press ``button``; the status of the page it leads to."""
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button, exact=True).click()
    response = navigation.value
    assert response is not None
    return response.status


def form_record(page: Page) -> dict[str, float]:
    return {name: float(field(page, name).input_value()) for name in IRIS_FEATURES}


def test_the_form_shows_what_the_api_answers_for_the_same_record(
    page: Page, iris_server: Server
) -> None:
    page.goto(iris_server.url + "/")
    for name in IRIS_FEATURES:  # prefilled with a typical training value, within the range
        value = float(field(page, name).input_value())
        spec = load_schema(IRIS_SCHEMA).columns[name]
        assert spec.min is not None and spec.max is not None
        assert spec.min <= value <= spec.max
        assert (
            f"from {spec.min:g} to {spec.max:g}"
            in page.locator(".field", has=field(page, name)).inner_text()
        )
    field(page, "petal length (cm)").fill("5.6")
    field(page, "petal width (cm)").fill("2.1")
    assert submit(page, "Predict") == 200

    expected = api(iris_server, form_record(page)).json()
    shown = page.locator("#prediction")
    assert shown.inner_text() == str(expected["prediction"]) == "2"
    rows = page.locator("#probabilities tbody tr")
    assert rows.count() == 3
    classes = [rows.nth(i).get_attribute("data-class") for i in range(3)]
    probabilities = [float(rows.nth(i).get_attribute("data-value") or "nan") for i in range(3)]
    assert classes == ["0", "1", "2"]
    assert probabilities == expected["probabilities"]
    assert page.locator("tr.chosen").get_attribute("data-class") == "2"
    assert page.locator("#result-version").inner_text() == expected["model_version"] == "1"
    assert page.locator("#prediction-id").inner_text()
    if os.environ.get("MLOOP_PAGE_SCREENSHOT"):
        page.set_viewport_size({"width": WIDTH, "height": 400})  # the page's own height
        page.screenshot(path=os.environ["MLOOP_PAGE_SCREENSHOT"], full_page=True)

    page.locator("#model-link").click()
    page.wait_for_url(iris_server.url + "/model")
    assert '"metrics"' in page.content() and '"git_commit"' in page.content()


@pytest.mark.parametrize(
    ("name", "typed", "fragment"),
    [("petal width (cm)", "9", "outside the allowed range"), ("sepal width (cm)", "wide", "got `str`"),
     ("sepal length (cm)", "", "missing required field")],
    ids=["out-of-range", "not-a-number", "empty"],
)  # fmt: skip
def test_bad_input_shows_the_apis_message_next_to_its_field(
    page: Page, iris_server: Server, name: str, typed: str, fragment: str
) -> None:
    page.goto(iris_server.url + "/")
    field(page, name).fill(typed)
    record: dict[str, Any] = {
        n: float(field(page, n).input_value()) for n in IRIS_FEATURES if n != name
    }
    if typed:
        record[name] = float(typed) if typed[0].isdigit() else typed
    answer = api(iris_server, record)
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert detail["loc"] == ["body", name] and fragment in detail["msg"]

    assert submit(page, "Predict") == 422
    index = IRIS_FEATURES.index(name)
    assert page.locator(f"#error-{index}").inner_text() == detail["msg"]
    assert field(page, name).get_attribute("aria-invalid") == "true"
    assert field(page, name).input_value() == typed  # what was typed stays, to be corrected
    assert page.locator(".field-error").count() == 1
    assert page.locator("#prediction").count() == 0


def upload(page: Page, name: str, content: bytes) -> None:
    page.locator("#csv-file").set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": content}]
    )


def csv_bytes(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue().encode()


def test_a_csv_upload_returns_the_apis_predictions_for_its_rows(
    page: Page, iris_server: Server, tmp_path: Path
) -> None:
    records = flowers(0, 25, 60, 99, 120, 149)
    page.goto(iris_server.url + "/")
    upload(page, "flowers.csv", csv_bytes(records))
    with page.expect_download() as download:
        page.get_by_role("button", name="Predict the file").click()
    assert download.value.suggested_filename == "predictions-v1.csv"
    saved = tmp_path / "predictions.csv"
    download.value.save_as(saved)

    expected = api(iris_server, records).json()
    with saved.open(newline="") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    proba = [f"probability_{label}" for label in (0, 1, 2)]
    assert header == [*IRIS_FEATURES, "prediction", *proba, "prediction_id"]
    assert len(rows) == len(records)
    width = len(IRIS_FEATURES)
    for row, record, prediction, probabilities in zip(
        rows, records, expected["predictions"], expected["probabilities"]
    ):
        assert [float(cell) for cell in row[:width]] == list(record.values())
        assert int(row[width]) == prediction
        assert [float(cell) for cell in row[width + 1 : width + 4]] == probabilities
    ids = [row[-1] for row in rows]
    assert all(ids) and len(set(ids)) == len(ids)
    assert page.url == iris_server.url + "/"  # a download: the page stays


def test_a_csv_with_a_bad_row_lists_the_apis_message_with_its_line(
    page: Page, iris_server: Server
) -> None:
    records: list[dict[str, Any]] = flowers(0, 60, 120)
    records[2]["petal width (cm)"] = 7.5
    answer = api(iris_server, records)
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert detail["loc"] == ["body", 2, "petal width (cm)"]

    page.goto(iris_server.url + "/")
    upload(page, "flowers.csv", csv_bytes(records))
    assert submit(page, "Predict the file") == 422
    message = page.locator("#csv-errors li")
    assert message.count() == 1
    assert message.inner_text() == f"line 4, column petal width (cm): {detail['msg']}"


def test_a_csv_over_the_body_limit_is_refused_with_a_clear_message(
    page: Page, iris_server: Server
) -> None:
    row = ",".join(["5.1"] * len(IRIS_FEATURES)) + "\n"
    content = (",".join(IRIS_FEATURES) + "\n" + row * (BODY_LIMIT // len(row) + 64)).encode()
    assert len(content) > BODY_LIMIT
    page.goto(iris_server.url + "/")
    upload(page, "big.csv", content)
    page.get_by_role("button", name="Predict the file").click()
    expect(page.locator("#csv-errors")).to_contain_text(
        "big.csv is 2.0 MB: the service takes files up to 2.0 MB"
    )
    assert page.url == iris_server.url + "/"
    # Sent anyway (no script): the service's 413, which says why, before it reads the body.
    head = (
        "POST /predictions.csv HTTP/1.1\r\nHost: page\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {len(content) + 200}\r\n\r\n"
    )
    answer = b""
    url = httpx.URL(iris_server.url)
    with socket.create_connection((url.host, url.port or 80), timeout=10) as sock:
        sock.sendall(head.encode())
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert f"request body larger than {BODY_LIMIT} bytes".encode() in answer


def test_a_repeated_form_field_gets_the_apis_duplicate_key_message(iris_server: Server) -> None:
    # The form's pairs reach /predict's code as sent: the API's own check names the repeat.
    record = flowers(0)[0]
    name = IRIS_FEATURES[0]
    pairs = [(key, str(value)) for key, value in record.items()] + [(name, "5.0")]
    with iris_server.client() as client:
        response = client.post("/", content=urlencode(pairs), headers=FORM)
        json_body = b"{" + b",".join(f'"{key}":{value}'.encode() for key, value in pairs) + b"}"
        api_answer = client.post("/predict", content=json_body, headers=JSON)
    assert response.status_code == api_answer.status_code == 422
    message = api_answer.json()["detail"][0]["msg"]
    assert "appears twice" in message
    assert message in html.unescape(response.text)


def test_the_page_routes_are_counted_by_name(iris_server: Server) -> None:
    with iris_server.client() as client:
        assert client.get("/").status_code == 200
        assert client.post("/", data={"petal width (cm)": "x"}).status_code == 422
        exposition = client.get("/metrics").text
    assert 'method="GET",route="/",status="2xx"' in exposition
    assert 'method="POST",route="/",status="4xx"' in exposition


def test_category_features_are_lists_prefilled_with_the_most_frequent_value(page: Page) -> None:
    """The tips schema (text categories, an int): rendered without a server, read in the browser."""
    from service.api.page import Page as Renderer

    schema = load_schema(TIPS_SCHEMA)
    frame = sources.BUNDLED["plotly.tips"]()
    bundle = SimpleNamespace(
        schema=schema,
        reference=compute_reference(frame, schema, 10),
        meta={"registered_model": "mloop-tips", "metrics": {"rmse": 1.0}},
        classes=None,
    )
    model = SimpleNamespace(bundle=bundle, version="7")
    settings = SimpleNamespace(
        max_feedback_body_bytes=2**21, max_batch_rows=100, out_of_range="reject"
    )
    renderer = Renderer(SimpleNamespace(settings=settings))
    page.set_content(bytes(renderer.render(model).body).decode())

    for name in ("sex", "smoker", "day", "time"):
        select = field(page, name)
        assert select.evaluate("node => node.tagName") == "SELECT"
        options = select.locator("option").all_inner_texts()
        assert options == schema.columns[name].categories
        assert select.input_value() == frame[name].mode()[0]
    assert field(page, "size").input_value() == "2"
    template = page.locator("a[download]").get_attribute("href") or ""
    assert template.startswith("data:text/csv;charset=utf-8,")
    lines = unquote(template.split(",", 1)[1]).splitlines()
    assert lines[0] == ",".join(schema.features)
    assert lines[1].split(",")[1:5] == ["Male", "No", "Sat", "Dinner"]
    assert float(field(page, "total_bill").input_value()) == pytest.approx(
        np.median(frame["total_bill"]), abs=1e-9
    )


def test_a_csv_over_the_batch_limit_shows_the_apis_413(page: Page, iris_server: Server) -> None:
    records = flowers(*range(150)) * (MAX_ROWS // 150 + 1)
    answer = api(iris_server, records)
    assert answer.status_code == 413
    page.goto(iris_server.url + "/")
    upload(page, "flowers.csv", csv_bytes(records))
    assert submit(page, "Predict the file") == 413
    expect(page.locator("#csv-errors li")).to_have_text([answer.json()["detail"][0]["msg"]])


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "the file is empty"), (b"a,b\n1\n", "line 2: 1 values, the header has 2 columns"),
     (b"a,a\n1,2\n", "column 'a' appears twice"), (b"a\n\xff\n", "not UTF-8")],
    ids=["empty", "ragged", "repeated-column", "not-utf8"],
)  # fmt: skip
def test_what_is_no_csv_of_records_is_named(content: bytes, problem: str) -> None:
    from service.api.page import CsvProblem, read_csv

    with pytest.raises(CsvProblem, match=problem):
        read_csv(content)


def test_blank_lines_are_skipped_and_errors_name_the_files_line() -> None:
    from service.api.page import csv_message, read_csv

    header, rows, lines = read_csv(b"\xef\xbb\xbfa, b\n1,2\n\n3,x\n")
    assert header == ["a", "b"] and rows == [["1", "2"], ["3", "x"]] and lines == [2, 4]
    item = {"loc": ["body", 1, "b"], "msg": "Expected `float`, got `str`"}
    assert csv_message(item, lines) == "line 4, column b: Expected `float`, got `str`"
    assert csv_message({"loc": ["body"], "msg": "empty batch"}, lines) == "empty batch"
