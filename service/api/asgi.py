"""Three small pure-ASGI layers around the FastAPI app.

``FastPredict`` answers ``POST /predict`` itself: FastAPI's generic per-request work (dependency
resolution, pydantic, response classes) costs several times the model, so the hot path is the
bare ASGI protocol plus msgspec. It times its own requests into :class:`HotPathSamples`, folded
into the HTTP metrics in bulk. FastAPI keeps every other route and documents /predict.
``HttpMetrics`` counts and times every other request by route template, never by raw path.
``BodyLimit`` reads every other request's body up to a limit (413 beyond it) before FastAPI sees
it: no route parses a body larger than it allows.

Both /predict and /feedback take JSON only: any other content type is a 415 (a form or a body
without a type is no JSON, whatever it holds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.telemetry import metrics
from service.telemetry.folding import HotPathSamples

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
PredictHandler = Callable[[bytes], tuple[int, bytes]]

JSON_HEADER = (b"content-type", b"application/json")
JSON_HEADERS = [JSON_HEADER]
CLOSE = [(b"connection", b"close")]  # after a 413: the rest of the body is not read
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# Bodies above this many bytes (roughly 500 rows) are decoded and predicted in a worker thread, so a
# large batch does not hold the event loop while single-row requests wait behind it.
INLINE_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_json(
    send: Send, status: int, payload: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def too_large(limit: int) -> bytes:
    return (
        b'{"detail":[{"loc":["body"],"msg":"request body larger than '
        + str(limit).encode()
        + b' bytes","type":"too_large"}]}'
    )


NOT_JSON = (
    b'{"detail":[{"loc":["header","content-type"],"msg":"send the body as application/json",'
    b'"type":"unsupported_media_type"}]}'
)


def is_json(content_type: bytes) -> bool:
    """``application/json``, with or without parameters (``; charset=utf-8``), in any case."""
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


def sends_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value == b"application/json" or is_json(value)
    return False


def declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class FastPredict:
    """``POST /predict`` in front of ``app``; ``samples`` None means metrics are off.

    ``handler`` answers on the event loop's thread, ``worker_handler`` in a worker thread (large
    bodies); the timings go to ``samples`` on the loop's thread, which owns them.
    """

    def __init__(
        self,
        app: ASGIApp,
        handler: PredictHandler,
        worker_handler: PredictHandler,
        max_body_bytes: int,
        samples: HotPathSamples | None,
    ) -> None:
        self.app = app
        self.handler = handler
        self.worker_handler = worker_handler
        self.max_body_bytes = max_body_bytes
        self.samples = samples

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        extra = None
        # The common case in one C-level search of the header list (~0.05 us); the loop (~0.2
        # us) only for other spellings (parameters, capitals) and for the answer to no JSON.
        json_body = JSON_HEADER in scope["headers"] or sends_json(scope)
        if not json_body:
            status, payload = 415, NOT_JSON
        else:
            try:
                body: bytes | None = await read_body(receive, self.max_body_bytes)
            except BodyTooLarge:
                body = None
                status, payload, extra = 413, too_large(self.max_body_bytes), CLOSE
            except ConnectionError:
                return  # the client went away before its request was complete: nothing to answer
            if body is not None:
                try:
                    if len(body) > INLINE_BODY_BYTES:
                        status, payload = await asyncio.to_thread(self.worker_handler, body)
                    else:
                        status, payload = self.handler(body)
                except Exception:
                    if self.samples is not None:  # the server's 500 answer to a handler's bug
                        self.samples.http(500, time.perf_counter() - started)
                    raise
        await send_json(send, status, payload, extra)
        if self.samples is not None:
            self.samples.http(status, time.perf_counter() - started)


class BodyLimit:
    """Reads the body of every request for ``app`` up to ``limit`` bytes (a 413 beyond it, and the
    connection closed), then hands it over whole.

    So no route parses more than it allows, whatever FastAPI would do with it, and a declared
    length over the limit is refused before a byte of the body is read.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        try:
            if length is not None and length > self.limit:
                raise BodyTooLarge
            body = await read_body(receive, self.limit)
        except BodyTooLarge:
            await send_json(send, 413, too_large(self.limit), CLOSE)
            return
        except ConnectionError:
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # only a disconnect can come now
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class HttpMetrics:
    def __init__(self, app: ASGIApp, routes: set[str]) -> None:
        self.app = app
        self.routes = routes
        # Label children by (method, route, status class): a closed, small set; labels() per request
        # would take a lock and build a tuple every time.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = time.perf_counter() - started
            key = (scope["method"], scope["path"], status // 100)
            children = self._children.get(key)
            if children is None:
                children = self._children_for(*key)
            children[0].inc()
            children[1].observe(elapsed)

    def _children_for(self, method: str, path: str, status_class: int) -> tuple[Any, Any]:
        route = path if path in self.routes else metrics.UNMATCHED_ROUTE
        method = method if method in KNOWN_METHODS else "OTHER"
        children = (
            metrics.http_requests.labels(method, route, f"{status_class}xx"),
            metrics.http_duration.labels(method, route),
        )
        if route == path and method in KNOWN_METHODS:  # unknown paths/methods never grow the cache
            self._children[(method, path, status_class)] = children
        return children
