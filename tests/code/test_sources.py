"""mloop.sources: bundled, path and url sources, each refused when it is not the pinned file.

URL sources are fetched from a real ``http.server`` on 127.0.0.1, run in a thread for the test.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mloop import sources
from mloop.config import DatasetSchema, SourceConfig
from mloop.errors import SourceError
from tests.helpers.net import free_port
from tests.helpers.paths import DIABETES_SCHEMA, PARAMS
from tests.helpers.servers import http_server_thread

CSV = b"a;b;target\n1;2;3\n4;5;6\n"
CSV_SHA = hashlib.sha256(CSV).hexdigest()
WRONG_SHA = "0" * 64


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base
        pass


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; the local server must be reached directly."""
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def http_root(tmp_path: Path, no_proxy: None) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1, and its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    with http_server_thread(functools.partial(QuietHandler, directory=str(root))) as url:
        yield root, url


# ------------------------------------------------------------------------------------- bundled


def test_bundled_diabetes_is_rendered_to_checksummed_csv(
    tmp_path: Path, diabetes_schema: DatasetSchema
):
    fetched = sources.fetch(diabetes_schema.source, base_dir=tmp_path)
    assert fetched.origin == "bundled:sklearn.diabetes"
    assert fetched.sha256 == hashlib.sha256(fetched.content).hexdigest()
    frame = sources.parse_table(fetched.content, fetched.sep)
    assert frame.shape == (442, 11)
    assert list(frame.columns) == list(diabetes_schema.columns)
    again = sources.fetch(diabetes_schema.source, base_dir=tmp_path)
    assert again.sha256 == fetched.sha256, "a bundled source must render to identical bytes"


def test_bundled_source_pinned_to_another_checksum_is_refused(tmp_path: Path):
    source = SourceConfig(kind="bundled", name="sklearn.diabetes", sha256=WRONG_SHA)
    with pytest.raises(SourceError, match="checksum mismatch for bundled:sklearn.diabetes"):
        sources.fetch(source, base_dir=tmp_path)


def test_unknown_bundled_dataset_is_refused(tmp_path: Path):
    with pytest.raises(SourceError, match="unknown bundled dataset 'sklearn.digits'"):
        sources.fetch(SourceConfig(kind="bundled", name="sklearn.digits"), base_dir=tmp_path)


# ---------------------------------------------------------------------------------------- path


def test_path_source_with_matching_sha256_is_read_relative_to_base_dir(tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.csv").write_bytes(CSV)
    source = SourceConfig(kind="path", path="data/d.csv", sha256=CSV_SHA, sep=";")
    fetched = sources.fetch(source, base_dir=tmp_path)
    assert fetched.content == CSV
    assert fetched.sha256 == CSV_SHA
    assert fetched.origin == str(tmp_path / "data" / "d.csv")
    frame = sources.parse_table(fetched.content, fetched.sep)
    pd.testing.assert_frame_equal(frame, pd.DataFrame({"a": [1, 4], "b": [2, 5], "target": [3, 6]}))


def test_path_source_with_wrong_sha256_is_refused(tmp_path: Path):
    path = tmp_path / "d.csv"
    path.write_bytes(CSV)
    source = SourceConfig(kind="path", path=str(path), sha256=WRONG_SHA)
    with pytest.raises(SourceError) as excinfo:
        sources.fetch(source, base_dir=tmp_path / "elsewhere")  # absolute path ignores base_dir
    message = str(excinfo.value)
    assert "checksum mismatch" in message
    assert WRONG_SHA in message and CSV_SHA in message


def test_path_source_changed_by_one_byte_is_refused(tmp_path: Path):
    (tmp_path / "d.csv").write_bytes(CSV.replace(b"6", b"7"))
    source = SourceConfig(kind="path", path="d.csv", sha256=CSV_SHA)
    with pytest.raises(SourceError, match="checksum mismatch"):
        sources.fetch(source, base_dir=tmp_path)


def test_unpinned_path_source_reports_its_checksum(tmp_path: Path):
    (tmp_path / "d.csv").write_bytes(CSV)
    fetched = sources.fetch(SourceConfig(kind="path", path="d.csv"), base_dir=tmp_path)
    assert fetched.sha256 == CSV_SHA


def test_missing_path_source_is_a_source_error(tmp_path: Path):
    with pytest.raises(SourceError, match="cannot read dataset file"):
        sources.fetch(SourceConfig(kind="path", path="absent.csv"), base_dir=tmp_path)


# ----------------------------------------------------------------------------------------- url


def test_url_source_with_matching_sha256_is_downloaded(http_root: tuple[Path, str]):
    root, base_url = http_root
    (root / "d.csv").write_bytes(CSV)
    source = SourceConfig(kind="url", url=f"{base_url}/d.csv", sha256=CSV_SHA, sep=";")
    fetched = sources.fetch(source, base_dir=Path("."))
    assert fetched.content == CSV
    assert fetched.sha256 == CSV_SHA
    assert fetched.origin == f"{base_url}/d.csv"
    assert sources.parse_table(fetched.content, fetched.sep)["target"].tolist() == [3, 6]


def test_url_source_with_wrong_sha256_is_refused(http_root: tuple[Path, str]):
    root, base_url = http_root
    (root / "d.csv").write_bytes(CSV)
    source = SourceConfig(kind="url", url=f"{base_url}/d.csv", sha256=WRONG_SHA)
    with pytest.raises(SourceError, match=f"checksum mismatch for {base_url}/d.csv"):
        sources.fetch(source, base_dir=Path("."))


def test_url_source_http_error_is_a_source_error(http_root: tuple[Path, str]):
    _, base_url = http_root
    source = SourceConfig(kind="url", url=f"{base_url}/missing.csv", sha256=CSV_SHA)
    with pytest.raises(SourceError, match="could not download .*HTTP 404"):
        sources.fetch(source, base_dir=Path("."))


def test_unreachable_url_source_is_a_source_error(no_proxy: None):
    url = f"http://127.0.0.1:{free_port()}/d.csv"
    with pytest.raises(SourceError, match=f"could not download {url}"):
        sources.fetch(SourceConfig(kind="url", url=url, sha256=CSV_SHA), base_dir=Path("."))


# --------------------------------------------------------------------------------------- parse


def test_empty_content_parses_to_an_empty_frame_for_validation_to_report():
    frame = sources.parse_table(b"", ",")
    assert frame.empty and len(frame.columns) == 0


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4,
            "not a CSV file (it holds binary data)",
        ),
        ("a;b\n1;caf\u00e9\n".encode("latin-1"), "not UTF-8 text (byte 9 is 0xe9)"),
    ],
    ids=["binary", "latin-1"],
)
def test_a_file_that_is_no_utf8_text_is_one_line_naming_it(content: bytes, fragment: str) -> None:
    with pytest.raises(SourceError) as caught:
        sources.parse_table(content, ";", "data/source.bin")
    message = str(caught.value)
    assert message.startswith("data/source.bin: ") and fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"\x00\x01binary", "not a CSV file"), (b"age,sex,target\n", "no data rows (a header only)")],
    ids=["binary", "header-only"],
)
def test_ingest_fails_with_one_line_naming_the_file(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    import subprocess
    import sys

    import yaml

    source = tmp_path / "source.csv"
    source.write_bytes(content)
    schema = yaml.safe_load(DIABETES_SCHEMA.read_text())
    schema["source"] = {"kind": "path", "path": str(source)}
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema))
    params = yaml.safe_load(PARAMS.read_text())
    params["dataset"] = "schema.yaml"
    params["paths"] = {key: str(tmp_path / value) for key, value in params["paths"].items()}
    params["ingest"]["extra_rows"] = str(tmp_path / "none")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run(
        [sys.executable, "-m", "mloop.ingest", "-p", str(tmp_path / "params.yaml")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    failure = [line for line in done.stderr.splitlines() if "ingest failed" in line]
    assert len(failure) == 1 and str(source) in failure[0] and fragment in failure[0], done.stderr
    assert "Traceback" not in done.stderr
