"""What a retrain is: behind one interface, run here (``local``) or as a GitLab pipeline (``gitlab``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from retrainer.settings import Settings


@dataclass(frozen=True)
class Outcome:
    """How a retrain ended. ``promoted``: the gate's verdict where the backend knows it (local)."""

    ok: bool
    detail: str
    promoted: bool | None = None
    link: str | None = None


class Backend(Protocol):
    name: str

    def run(self, reason: str) -> Outcome:
        """Retrain once, blocking until done (or handed over); never raises for a failed retrain."""
        ...


def make_backend(settings: Settings) -> Backend:
    if settings.backend == "gitlab":
        from retrainer.backends.gitlab import GitLabBackend

        return GitLabBackend(settings)
    from retrainer.backends.local import LocalBackend

    return LocalBackend(settings)
