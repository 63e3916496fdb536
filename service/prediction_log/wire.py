"""The prediction log's wire format: calls as a few flat buffers, sent over a pipe out of band.

What the request-side buffer builds (:meth:`~service.prediction_log.buffer.Columns.packed`) and
the writer process reads; kept apart from the writer so the request path never imports it.
"""

from __future__ import annotations

import itertools
import pickle
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.prediction_log.ids import numbered_ids

if TYPE_CHECKING:
    from service.prediction_log.inserts import Call


@dataclass
class Packed:
    """Calls that share feature names, as a few flat buffers.

    Pickling happens in the serving process with the GIL held for the whole ``pickle.dumps``, so
    the message must be cheap to pickle: arrays and one string pickle as memory copies, whereas a
    list of 3,000 id strings took 0.7-1.4 ms (measured), long enough to delay requests. The ids
    travel as request numbers (the service's calls, :mod:`service.prediction_log.ids`) or as one text
    plus their lengths (ids given by the caller), the model versions as runs of calls.
    """

    names: list[str]
    counts: npt.NDArray[np.int64]  # rows per call
    id_prefix: str | None  # set: ids from the request numbers ...
    numbers: npt.NDArray[np.int64]  # ... of each call, their random tags ...
    tags: npt.NDArray[np.uint64]
    batch_calls: npt.NDArray[np.int64]  # ... and the calls that sent a list
    id_text: str  # otherwise every prediction id, concatenated ...
    id_lengths: npt.NDArray[np.int64]  # ... and its characters per id
    features: npt.NDArray[np.float64]
    outputs: npt.NDArray[Any]
    created_at: npt.NDArray[np.float64]  # per call
    versions: list[str]  # model version of a run of consecutive calls ...
    version_calls: npt.NDArray[np.int64]  # ... and how many calls the run holds

    @property
    def rows(self) -> int:
        return len(self.outputs)

    def ids(self) -> list[str]:
        if self.id_prefix is not None:
            counts, batch_calls = self.counts.tolist(), self.batch_calls.tolist()
            return numbered_ids(self.id_prefix, self.numbers, self.tags, counts, batch_calls)
        ends = np.cumsum(self.id_lengths).tolist()
        text = self.id_text
        return [text[start:end] for start, end in zip([0, *ends[:-1]], ends)]

    def call_versions(self) -> list[str]:
        """The model version of every call, in order."""
        return list(
            itertools.chain.from_iterable(
                itertools.repeat(version, calls)
                for version, calls in zip(self.versions, self.version_calls.tolist())
            )
        )

    def row_versions(self) -> list[str]:
        """The model version of every row, in order: rows per run of calls of one version, then
        each version repeated (C-level, no per-call loop)."""
        if not self.rows:
            return []
        run_starts = np.concatenate([[0], np.cumsum(self.version_calls)[:-1]]).astype(np.intp)
        run_rows = np.add.reduceat(self.counts, run_starts).tolist()
        return list(itertools.chain.from_iterable(map(itertools.repeat, self.versions, run_rows)))

    def unpack(self) -> list[Call]:
        bounds = np.cumsum(self.counts)[:-1]
        features = np.split(self.features, bounds)
        outputs = np.split(self.outputs, bounds)
        starts = [0, *bounds.tolist()]
        ids = self.ids()
        versions = self.call_versions()
        return [
            (
                versions[i],
                ids[start : start + int(count)],
                features[i],
                self.names,
                outputs[i],
                float(self.created_at[i]),
            )
            for i, (start, count) in enumerate(zip(starts, self.counts.tolist()))
        ]


def send_packed(connection: Connection, packed: Packed) -> None:
    """Send a message with its arrays out of band: pickled in band, a 264 KB feature array took
    ~250 us of GIL-holding copying (measured); as raw buffers it goes straight from the array's
    memory into the pipe, in writes that release the GIL."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(packed, protocol=5, buffer_callback=buffers.append)
    connection.send(("rows", header, len(buffers)))
    for buffer in buffers:
        connection.send_bytes(buffer.raw())


def receive_packed(connection: Connection, header: bytes, buffer_count: int) -> Packed:
    buffers = [connection.recv_bytes() for _ in range(buffer_count)]
    packed: Packed = pickle.loads(header, buffers=buffers)
    return packed
