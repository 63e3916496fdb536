"""Shared terminal output and the error boundary of every stage CLI."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from mloop.config import ConfigError
from mloop.errors import StageError

# Pipelines mostly run in CI logs and under `dvc repro`, where rich would assume 80 columns.
_interactive = sys.stderr.isatty()
console = Console(stderr=True, highlight=False, width=None if _interactive else 120)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Turn expected failures into a one-screen message and exit 1; let bugs keep their traceback."""
    console.rule(f"[bold]{name}")
    try:
        yield
    except (StageError, ConfigError) as exc:
        console.print(f"[bold red]{name} failed:[/] {exc}", soft_wrap=True)
        sys.exit(1)
