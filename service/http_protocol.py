"""uvicorn's httptools protocol with a deadline on reading each request.

uvicorn times idle keep-alive connections out only after a response: a connection that sends
nothing, half a request line, half the headers, or a body slower than it declared, holds its socket
(and, once the headers are in, a task) for as long as the client likes. Measured before this: 200
half-sent bodies were all still held after 20 s. Here a request (line, headers and body) must arrive
whole within ``request_timeout_s`` of its first byte, and a new connection must send its first
request within that time of opening. Late ones are answered 408 (if no response has started) and
closed, and counted (``mloop_http_request_timeouts_total``).

Why a sweep once a second and not a timer per request: a ``call_later`` and its cancel would add
~2 us to every request, the sweep ~0.2 us per open connection per second. Behind a reverse proxy
(nginx's ``client_header_timeout``/``client_body_timeout``), this is a second line of defence.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service import metrics

SWEEP_INTERVAL_S = 1.0
TIMEOUT_RESPONSE = (
    b'{"detail":[{"loc":[],"msg":"the request did not arrive in time","type":"timeout"}]}'
)
TIMEOUT_HEAD = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(TIMEOUT_RESPONSE)).encode() + b"\r\n\r\n"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``--http service.http_protocol:GuardedHttpToolsProtocol``; the deadline is a class setting
    (:func:`configure`), since uvicorn builds protocols from its own config only."""

    request_timeout_s: ClassVar[float] = 30.0
    _swept: ClassVar[set[int]] = set()  # ids of the event loops that run a sweep

    reading_since: float | None = None  # loop time a request (or the connection) started

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.reading_since = self.loop.time()
        if id(self.loop) not in self._swept:
            self._swept.add(id(self.loop))
            self.loop.call_later(SWEEP_INTERVAL_S, _sweep, self.loop, self.connections)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.reading_since is None:  # a new connection's first request keeps its start
            self.reading_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_since = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.reading_since = None
        super().connection_lost(exc)

    def expire(self) -> None:
        """The request is late: 408 unless a response has started, then close."""
        self.reading_since = None
        if self.transport.is_closing():
            return
        metrics.http_timeouts.inc()
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(TIMEOUT_HEAD + TIMEOUT_RESPONSE)
        self.transport.close()


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
    deadline = loop.time() - GuardedHttpToolsProtocol.request_timeout_s
    for protocol in list(connections):
        since = getattr(protocol, "reading_since", None)
        if since is not None and since < deadline:
            protocol.expire()
    loop.call_later(SWEEP_INTERVAL_S, _sweep, loop, connections)


def configure(request_timeout_s: float) -> None:
    GuardedHttpToolsProtocol.request_timeout_s = request_timeout_s
