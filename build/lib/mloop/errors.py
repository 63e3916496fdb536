"""Errors a user can act on. A stage CLI prints them without a traceback and exits non-zero."""


class StageError(Exception):
    """A stage cannot do its job because of its input or environment, not because of a bug."""


class SourceError(StageError):
    """The dataset source is unreachable, unreadable or not the file that was pinned."""


class DataValidationError(StageError):
    """The data violates its schema; the message lists every violation."""


class PromotionRefused(StageError):
    """The challenger did not beat the champion and the caller asked for a non-zero exit."""
