"""The HTTP ceiling: the same server stack as the service, with no application work at all.

uvicorn with httptools and uvloop, no access log, one worker (the service's stack, with the
faster of its two event loops), and an ASGI app that reads the request body and answers a fixed
JSON of the size of a real prediction. Whatever this reaches on one core is the most any Python
ASGI service on this stack can do; the service's throughput is reported as a fraction of it.

    python benchmarks/bare_asgi.py --port 8001
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
# Same shape and size as a single-row answer of the service (id, prediction, model_version).
PAYLOAD = b'{"id":"0123456789abcdef0123456789abcdef","prediction":5.123456789,"model_version":"1"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(PAYLOAD)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Drain the body (the service must read it too), then send the fixed answer."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": PAYLOAD})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="uvloop: the machine's ceiling; asyncio: the ceiling of the service's default loop",
    )
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        http="httptools",
        loop=args.loop,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
