"""Prediction ids: what ``/predict`` answers, what the log stores and what feedback refers to.

Request ``n`` of a process is ``<prefix><n as 12 hex digits><tag as 16 hex digits>``, and row ``r``
of a list it sent adds ``-<r>``. The prefix (64 random bits drawn once per process) keeps ids unique
across workers and restarts, the number keeps one process's ids in the order they were made (the
log's primary key grows at its end), and the tag (64 random bits per request, from the OS's
CSPRNG) makes an id unguessable: knowing one's own ids says nothing about anyone else's, so no one
can label another client's prediction. Tags are drawn in blocks (:class:`Tags`): one ``os.urandom``
per 4,096 requests instead of one per request. A call keeps its number and tag until the log's
writer makes the id strings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

TAG_BLOCK = 4096


def request_id(id_prefix: str, number: int, tag: int) -> str:
    """The id of request ``number`` (the hot path inlines this format)."""
    return f"{id_prefix}{number:012x}{tag:016x}"


class Tags:
    """Random 64-bit tags, drawn from ``os.urandom`` a block at a time."""

    def __init__(self) -> None:
        self.pool: list[int] = []

    def refill(self) -> list[int]:
        """The pool, refilled (the hot path pops from ``pool`` and calls this when it is empty)."""
        block = np.frombuffer(os.urandom(8 * TAG_BLOCK), dtype=np.uint64)
        self.pool.extend(block.tolist())
        return self.pool


def numbered_ids(
    id_prefix: str,
    numbers: npt.NDArray[np.int64],
    tags: npt.NDArray[np.uint64],
    counts: Sequence[int],
    batch_calls: Sequence[int],
) -> list[str]:
    """Every row's id, in order, for calls by request number and tag.

    ``counts`` are the rows of each call and ``batch_calls`` the calls (indexes, ascending) that
    sent a list: their rows end in ``-<row>``, even a list of one. The hex digits of all calls are
    made in one C-level pass (number and tag as big-endian bytes, then ``bytes.hex``) and sliced
    per call: ~0.13 us per id, against ~0.43 us for two integer formats per id (measured).
    """
    raw = np.empty((len(numbers), 14), dtype=np.uint8)
    raw[:, :6] = numbers.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]  # 12 hex digits
    raw[:, 6:] = tags.astype(">u8").view(np.uint8).reshape(-1, 8)  # 16 hex digits
    text = raw.tobytes().hex()
    ids = [id_prefix + text[start : start + 28] for start in range(0, len(text), 28)]
    if not len(batch_calls):
        return ids
    rows: list[str] = []
    start = 0
    for call in batch_calls:
        rows.extend(ids[start:call])
        base = ids[call]
        rows.extend([f"{base}-{row}" for row in range(counts[call])])
        start = call + 1
    rows.extend(ids[start:])
    return rows
