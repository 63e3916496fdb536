"""uvicorn's httptools protocol with a deadline on reading each request.

uvicorn times idle keep-alive connections out only after a response: a connection that sends
nothing, half a request line, half the headers, or a body slower than it declared, holds its socket
(and, once the headers are in, a task) for as long as the client likes. Measured before this: 200
half-sent bodies were all still held after 20 s. Here a request (line, headers and body) must arrive
whole within ``request_timeout_s`` of when it began (as a sweep once a second sees it), and a new
connection must send its first request within that time of opening. Late ones are answered 408
(if no response has started) and closed, and counted (``mloop_http_request_timeouts_total``).

Why a sweep once a second that reads uvicorn's own per-request state, and no code per request: a
timer per request (``call_later`` and its cancel) or overriding the parser's per-request callbacks
cost 1.5-2% of the throughput (measured head to head, ``benchmarks/ab_serving.py``); the sweep costs
~0.2 us per open connection per second. A request is late between ``request_timeout_s`` and one
sweep more. Behind a reverse proxy (nginx's ``client_header_timeout``/``client_body_timeout``), this
is a second line of defence.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.telemetry import metrics

SWEEP_INTERVAL_S = 1.0
TIMEOUT_RESPONSE = (
    b'{"detail":[{"loc":[],"msg":"the request did not arrive in time","type":"timeout"}]}'
)
TIMEOUT_HEAD = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(TIMEOUT_RESPONSE)).encode() + b"\r\n\r\n"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``--http service.api.http_protocol:GuardedHttpToolsProtocol``; the deadline is a class setting
    (:func:`configure`), since uvicorn builds protocols from its own config only."""

    request_timeout_s: ClassVar[float] = 30.0
    _swept: ClassVar[set[int]] = set()  # ids of the event loops that run a sweep

    # The request being received when a sweep last saw one (its scope; None: none begun yet on
    # a new connection), and the loop time it was first seen.
    waiting_for: Any = None
    waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()  # a new connection must send its request in time
        if id(self.loop) not in self._swept:
            self._swept.add(id(self.loop))
            self.loop.call_later(SWEEP_INTERVAL_S, _sweep, self.loop, self.connections)

    def receiving(self) -> bool:
        """Whether a request is being received: none begun on a new connection, its line or
        headers incomplete (no cycle for its scope yet), or its body incomplete."""
        cycle = self.cycle
        return cycle is None or cycle.scope is not self.scope or cycle.more_body

    def check(self, now: float) -> None:
        """Called by the sweep: expire a request that has been received for too long."""
        if not self.receiving():
            self.waiting_since = None
            return
        scope = self.scope
        if self.waiting_since is None or (
            scope is not self.waiting_for and self.waiting_for is not None
        ):
            self.waiting_since = now  # another request: its own clock
        self.waiting_for = scope  # (a new connection's first request keeps the connection's)
        if now - self.waiting_since > self.request_timeout_s:
            self.expire()

    def expire(self) -> None:
        """The request is late: 408 unless a response has started, then close."""
        self.waiting_since = self.waiting_for = None
        if self.transport.is_closing():
            return
        metrics.http_timeouts.inc()
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(TIMEOUT_HEAD + TIMEOUT_RESPONSE)
        self.transport.close()


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
    now = loop.time()
    for protocol in list(connections):
        check = getattr(protocol, "check", None)
        if check is not None:
            check(now)
    loop.call_later(SWEEP_INTERVAL_S, _sweep, loop, connections)


def configure(request_timeout_s: float) -> None:
    GuardedHttpToolsProtocol.request_timeout_s = request_timeout_s
