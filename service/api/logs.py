"""The service's logging: its own loggers in uvicorn's format, and no flood from a peer's mistakes.

uvicorn logs one warning per malformed request ("Invalid HTTP request received."): measured, 2,000
requests with an unknown method wrote 1,848 lines. :class:`RateLimit` lets each such message through
once per interval and says, with the next one, how many it held back.
"""

from __future__ import annotations

import logging
import threading
import time

# uvicorn's messages about what a peer sent (uvicorn.protocols.http.*_impl)
PEER_MESSAGES = frozenset(
    {
        "Invalid HTTP request received.",
        "Unsupported upgrade request.",
        "Exceeded concurrency limit.",
    }
)


class RateLimit(logging.Filter):
    """At most one record per message template (``record.msg``) every ``interval_s``."""

    def __init__(self, messages: frozenset[str], interval_s: float = 60.0) -> None:
        super().__init__()
        self.messages = messages
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        if key not in self.messages:
            return True
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.interval_s) < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{key} ({held} more like it since the last one, not logged)"
        return True


SERVICE_LOGGERS = ("mloop", "service")


def configure(level: int = logging.INFO) -> None:
    """Give the service's loggers a stderr handler in uvicorn's format (once per process)."""
    from uvicorn.logging import DefaultFormatter

    for name in SERVICE_LOGGERS:
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(DefaultFormatter("%(levelprefix)s %(name)s: %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = False


def limit_peer_messages(logger_name: str = "uvicorn.error", interval_s: float = 60.0) -> None:
    """Install :class:`RateLimit` on uvicorn's error logger (once per process)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit(PEER_MESSAGES, interval_s))
