"""Loopback ports, and waiting: for a condition to hold, for a URL to answer."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (closed again before it is returned)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
) -> bool:
    """Poll ``condition`` every ``interval`` seconds: True once it holds, False after ``timeout``.

    It is checked once more at the deadline; exceptions it raises propagate."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a GET of ``url`` is answered with 200 (False on any transport or HTTP error)."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False
