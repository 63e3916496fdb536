"""Closed-loop HTTP/1.1 load client that keeps every single latency, for honest tail percentiles.

wrk reports percentiles too, but the tails at 64 connections are the figure the service is judged
on, so they are cross-checked with a second, independent client: N keep-alive connections, each
sending the next request as soon as the previous response is complete, every latency kept (no
histogram buckets, no coordinated-omission correction: what a closed-loop client really waited).
The first request of each connection is timed from the moment the connection is opened, so the
connect cost is in the figures, as a real client that opens a connection would see it.

It is asyncio on raw sockets (uvloop when installed) rather than httpx: an HTTP library costs tens
of microseconds per request in Python, which would be measured as server latency. Run it pinned to
its own core (``taskset -c 1``); it prints one JSON object on stdout::

    python benchmarks/latency_client.py --port 8000 --path /predict --body-file row.json \\
        --connections 64 --duration 15
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import socket
import sys
import time
from pathlib import Path
from typing import Any, cast

NS_PER_MS = 1_000_000


def build_request(host: str, port: int, path: str, body: bytes, content_type: str) -> bytes:
    """The request bytes, built once: the client must not spend per-request time formatting."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


def response_end(buffer: bytearray) -> tuple[int, int] | None:
    """(status, bytes of one complete response) at the head of ``buffer``, or None if incomplete.

    Understands Content-Length and chunked bodies, which is all uvicorn sends.
    """
    header_end = buffer.find(b"\r\n\r\n")
    if header_end < 0:
        return None
    head = bytes(buffer[:header_end]).lower()
    status = int(head[9:12])
    body_start = header_end + 4
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        value_end = head.find(b"\r\n", marker + 2)
        value = head[marker + 17 : value_end if value_end >= 0 else len(head)]
        total = body_start + int(value.strip())
        return (status, total) if len(buffer) >= total else None
    if b"transfer-encoding: chunked" in head:
        last = buffer.find(b"0\r\n\r\n", body_start)
        return (status, last + 5) if last >= 0 else None
    return status, body_start  # no body (e.g. 204)


class Recorder:
    """Shared state of one run: the latencies, status counts and the stop time."""

    def __init__(self, deadline_ns: int) -> None:
        self.deadline_ns = deadline_ns
        self.latencies_ns: list[int] = []
        self.completed_ns: list[int] = []  # completion times, for --raw-out (when stalls happen)
        self.first_ns: list[int] = []  # first request of each connection (includes the connect)
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.connects = 0
        self.open_connections = 0
        self.all_closed = asyncio.Event()


class Connection(asyncio.Protocol):
    """One keep-alive connection sending the same request back to back until the deadline."""

    def __init__(self, recorder: Recorder, request: bytes, opened_ns: int) -> None:
        self.recorder = recorder
        self.request = request
        self.sent_ns = opened_ns  # first request: timed from the connection attempt
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting = False
        self.first = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:  # uvloop sets it already; plain asyncio does not
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.recorder.connects += 1
        self.waiting = True
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            parsed = response_end(self.buffer)
            if parsed is None:
                return
            status, size = parsed
            now = time.perf_counter_ns()
            del self.buffer[:size]
            recorder = self.recorder
            recorder.latencies_ns.append(now - self.sent_ns)
            recorder.completed_ns.append(now)
            if self.first:
                recorder.first_ns.append(now - self.sent_ns)
                self.first = False
            recorder.statuses[status] = recorder.statuses.get(status, 0) + 1
            self.waiting = False
            if self.transport is None:
                return
            if now >= recorder.deadline_ns:
                self.transport.close()
                return
            self.sent_ns = time.perf_counter_ns()
            self.waiting = True
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        recorder = self.recorder
        if self.waiting:
            recorder.errors += 1  # the server dropped a request in flight
        recorder.open_connections -= 1
        if recorder.open_connections == 0:
            recorder.all_closed.set()


async def keep_connected(recorder: Recorder, host: str, port: int, request: bytes) -> None:
    """Open one connection; if it dies before the deadline, open another (counted as an error)."""
    loop = asyncio.get_running_loop()
    recorder.open_connections += 1
    while True:
        opened = time.perf_counter_ns()
        try:
            await loop.create_connection(lambda: Connection(recorder, request, opened), host, port)
        except OSError:
            recorder.errors += 1
            if time.perf_counter_ns() >= recorder.deadline_ns:
                break
            await asyncio.sleep(0.01)
            continue
        return
    recorder.open_connections -= 1
    if recorder.open_connections == 0:
        recorder.all_closed.set()


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of every recorded value (no interpolation, no buckets)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(fraction * len(sorted_values) - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run(
    host: str,
    port: int,
    request: bytes,
    connections: int,
    duration_s: float,
    raw_out: Path | None = None,
) -> dict[str, Any]:
    started = time.perf_counter_ns()
    recorder = Recorder(started + int(duration_s * 1e9))
    await asyncio.gather(
        *(keep_connected(recorder, host, port, request) for _ in range(connections))
    )
    try:
        await asyncio.wait_for(recorder.all_closed.wait(), timeout=duration_s + 30)
        hung = 0
    except asyncio.TimeoutError:
        hung = recorder.open_connections  # requests still unanswered 30 s after the end
    elapsed_s = (time.perf_counter_ns() - started) / 1e9
    if raw_out is not None:
        with raw_out.open("w") as handle:
            handle.write("completed_ms latency_ms\n")
            for done, latency in zip(recorder.completed_ns, recorder.latencies_ns):
                handle.write(f"{(done - started) / NS_PER_MS:.3f} {latency / NS_PER_MS:.3f}\n")
    values = sorted(recorder.latencies_ns)
    count = len(values)
    first = sorted(recorder.first_ns)
    steady = list(values)
    for value in first:  # every latency except each connection's first request
        del steady[bisect.bisect_left(steady, value)]
    ok = sum(n for status, n in recorder.statuses.items() if 200 <= status < 300)
    return {
        "connections": connections,
        "duration_s": round(elapsed_s, 3),
        "requests": count,
        "rps": round(count / elapsed_s, 1) if elapsed_s else 0.0,
        "non_2xx": count - ok,
        "statuses": {str(k): v for k, v in sorted(recorder.statuses.items())},
        "errors": recorder.errors + hung,
        "connects": recorder.connects,
        "mean_ms": round(sum(values) / count / NS_PER_MS, 4) if count else None,
        "p50_ms": round(percentile(values, 0.50) / NS_PER_MS, 4),
        "p90_ms": round(percentile(values, 0.90) / NS_PER_MS, 4),
        "p99_ms": round(percentile(values, 0.99) / NS_PER_MS, 4),
        "p999_ms": round(percentile(values, 0.999) / NS_PER_MS, 4),
        "max_ms": round(values[-1] / NS_PER_MS, 4) if count else None,
        "first_request_p50_ms": round(percentile(first, 0.5) / NS_PER_MS, 4),
        "first_request_max_ms": round(first[-1] / NS_PER_MS, 4) if first else None,
        "steady_p99_ms": round(percentile(steady, 0.99) / NS_PER_MS, 4),
        "steady_max_ms": round(steady[-1] / NS_PER_MS, 4) if steady else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds")
    parser.add_argument(
        "--raw-out", type=Path, help="write every request (completion time, latency) here"
    )
    args = parser.parse_args()
    request = build_request(
        args.host, args.port, args.path, args.body_file.read_bytes(), args.content_type
    )
    coroutine = run(args.host, args.port, request, args.connections, args.duration, args.raw_out)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(coroutine)
    else:
        result = uvloop.run(coroutine)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
