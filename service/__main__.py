"""Start the service: ``python -m service --workers 2 --port 8000``.

With more than one worker, prometheus-client's multiprocess mode needs a directory shared by the
workers and emptied before they start (stale files from a previous run would be summed in). A
directory made here is removed again on shutdown; one named by ``PROMETHEUS_MULTIPROC_DIR`` is the
caller's, and stays.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from enum import Enum
from pathlib import Path

import typer
import uvicorn


class EventLoop(str, Enum):
    asyncio = "asyncio"
    uvloop = "uvloop"


def main(
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 in a container)"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, min=1),
    log_level: str = typer.Option("info"),
    loop: EventLoop = typer.Option(
        EventLoop.asyncio, help="asyncio is fair to new connections; uvloop gives ~10% more req/s"
    ),
) -> None:
    """Serve the champion bundle (MLOOP_BUNDLE_DIR, default models/champion)."""
    from service.settings import Settings

    settings = Settings()
    made_here: str | None = None
    if workers > 1:
        if settings.watch_interval_s == 0:
            typer.echo(
                "warning: MLOOP_WATCH_INTERVAL_S=0 with several workers: POST /admin/reload "
                "reloads only the worker that answers it, and the others keep the old model",
                err=True,
            )
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            directory = made_here = tempfile.mkdtemp(prefix="mloop-prom-")
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        uvicorn.run(
            "service.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,  # uvicorn's access log alone halves throughput; metrics cover it
            log_level=log_level,
            # httptools, with a deadline on reading each request (service/api/http_protocol.py)
            http="service.api.http_protocol:GuardedHttpToolsProtocol",
            timeout_keep_alive=settings.keep_alive_timeout_s,
            # asyncio by default: measured with 1,000 connections on one core, uvloop left some
            # connections' first request waiting over 2 s (up to 10 s) while it served the others;
            # asyncio served every request within 0.42 s, for ~10% less throughput.
            loop=loop.value,
        )
    finally:
        if made_here is not None:
            shutil.rmtree(made_here, ignore_errors=True)


if __name__ == "__main__":
    typer.run(main)
