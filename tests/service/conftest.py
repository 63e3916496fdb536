"""Fixtures of the service tests: a real bundle and a real server process serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.bundles import make_bundle
from tests.helpers.servers import Server, start_server, stop_server


@pytest.fixture(scope="module")
def bundle_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "champion", version="1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bundle_v1: Path) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("server"), bundle_v1)
    yield running
    stop_server(running)
