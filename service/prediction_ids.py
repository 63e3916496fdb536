"""Prediction ids: what ``/predict`` answers, what the log stores and what feedback refers to.

A process draws 64 random bits once (its prefix); request ``n`` of that process is
``<prefix><n as 12 hex digits>``, and row ``r`` of a list it sent adds ``-<r>``. So an id is unique
across workers and restarts without a uuid4 (a syscall) per request, one process's ids sort in the
order they were made, and a call needs to keep only its number until its ids are written.
"""

from __future__ import annotations

from collections.abc import Sequence


def request_id(id_prefix: str, number: int) -> str:
    """The id of request ``number`` (the hot path inlines this format)."""
    return f"{id_prefix}{number:012x}"


def numbered_ids(
    id_prefix: str, numbers: Sequence[int], counts: Sequence[int], batch_calls: Sequence[int]
) -> list[str]:
    """Every row's id, in order, for calls by request number.

    ``counts`` are the rows of each call and ``batch_calls`` the calls (indexes, ascending) that
    sent a list: their rows end in ``-<row>``, even a list of one.
    """
    ids = [f"{id_prefix}{number:012x}" for number in numbers]  # request_id, inlined per row
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
