"""Fetch a dataset source as bytes and check it is the file that was pinned.

Bytes first, parsing second: the checksum must cover exactly what was downloaded or read, and a
bundled dataset is rendered to canonical CSV bytes so it gets a checksum like any other file.
"""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mloop.config import SourceConfig
from mloop.errors import SourceError

DOWNLOAD_TIMEOUT_S = 60.0


def _sklearn_frame(loader_name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        loader = getattr(datasets, loader_name)
        frame: pd.DataFrame = loader(as_frame=True).frame
        return frame

    return load


def _plotly_frame(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        # The file itself, not plotly.data: importing plotly's figure machinery takes a second.
        from importlib.resources import files

        with (files("plotly") / "package_data" / "datasets" / f"{name}.csv.gz").open("rb") as raw:
            return pd.read_csv(raw, compression="gzip")

    return load


# Datasets that ship inside a dependency, so the quick start needs no network and no shared folder.
BUNDLED: dict[str, Callable[[], pd.DataFrame]] = {
    "sklearn.diabetes": _sklearn_frame("load_diabetes"),
    "sklearn.breast_cancer": _sklearn_frame("load_breast_cancer"),
    "sklearn.iris": _sklearn_frame("load_iris"),
    "plotly.tips": _plotly_frame("tips"),  # text columns: the category dtype, offline
}


@dataclass(frozen=True)
class FetchedSource:
    content: bytes
    sha256: str
    origin: str
    sep: str


def _fetch_url(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise SourceError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"could not download {url}: {reason}") from None


def fetch(source: SourceConfig, base_dir: Path) -> FetchedSource:
    """Return the source's bytes, refusing them if a pinned sha256 does not match."""
    if source.kind == "bundled":
        assert source.name is not None
        if source.name not in BUNDLED:
            known = ", ".join(sorted(BUNDLED))
            raise SourceError(f"unknown bundled dataset {source.name!r}; known: {known}")
        content = BUNDLED[source.name]().to_csv(index=False).encode()
        origin, sep = f"bundled:{source.name}", ","
    elif source.kind == "path":
        assert source.path is not None
        path = Path(source.path)
        path = path if path.is_absolute() else base_dir / path
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read dataset file {path}: {exc.strerror}") from None
        origin, sep = str(path), source.sep
    else:
        assert source.url is not None
        content = _fetch_url(source.url)
        origin, sep = source.url, source.sep

    actual = hashlib.sha256(content).hexdigest()
    if source.sha256 and actual != source.sha256:
        raise SourceError(
            f"checksum mismatch for {origin}: expected sha256 {source.sha256}, got {actual}. "
            "The file changed or is a re-encoded copy; update the pin only if you trust the new file."
        )
    return FetchedSource(content=content, sha256=actual, origin=origin, sep=sep)


def parse_table(content: bytes, sep: str, origin: str = "the source") -> pd.DataFrame:
    """Parse CSV bytes; an empty file becomes an empty frame so validation can report it.

    A file that is no text (a NUL byte, or bytes that are not UTF-8) and a CSV that is not
    readable are one-line :class:`SourceError`s naming ``origin``.
    """
    if b"\x00" in content[:65536]:
        raise SourceError(f"{origin}: not a CSV file (it holds binary data)")
    try:
        return pd.read_csv(io.BytesIO(content), sep=sep)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{origin}: not UTF-8 text (byte {exc.start} is {content[exc.start]:#04x}): "
            "a binary file, or a CSV in another encoding (save it as UTF-8)"
        ) from None
    except pd.errors.ParserError as exc:
        raise SourceError(f"{origin}: not a readable CSV: {exc}") from None
