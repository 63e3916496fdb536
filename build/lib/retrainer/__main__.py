"""Start the retrainer: ``python -m retrainer --port 8090`` (settings: MLOOP_RETRAINER_* variables)."""

from __future__ import annotations

import logging

import typer
import uvicorn

from retrainer.app import create_app
from retrainer.settings import Settings


def main(
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 in a container)"),
    port: int = typer.Option(8090, help="TCP port"),
) -> None:
    """Receive Alertmanager's webhooks and retrain, one at a time."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    if settings.webhook_token() is None:
        logging.getLogger("retrainer").warning(
            "no MLOOP_RETRAINER_TOKEN(_FILE): POST /alerts answers 403 until one is set"
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    typer.run(main)
