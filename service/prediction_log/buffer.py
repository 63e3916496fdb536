"""The rows each ``/predict`` call leaves behind for the metrics, the drift window and the log.

Why one buffer for three consumers: under load, each Python call on the request path costs about
three times what it costs in a tight loop (measured for the model, the codec and the metrics), so
the request path makes one call, and takes no lock: only the event loop's thread adds to the
buffer and takes from it (``service.runtime.loop_owner``). It copies the call's rows into column buffers, so
no per-call object outlives the request for the cyclic GC to scan (keeping the request's own
arrays and id lists instead was cheaper in a loop and slower under load, measured). Once a second
the housekeeping thread has the loop take the columns, and hands the same arrays to all three
consumers.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np
import numpy.typing as npt

from service.prediction_log.inserts import malformed
from service.prediction_log.wire import Packed

FLOAT64 = np.dtype(np.float64)


class Columns:
    """Calls that share feature names, output dtype and id scheme, column by column.

    The rows are kept as raw bytes: a ``bytearray.extend`` from the request's array is one
    memcpy, ~0.4 us per call for the whole add against ~0.9 us with numpy item assignment into
    preallocated arrays (measured, one 11-feature row). ``features`` and ``outputs`` read them
    back as arrays, without copying, once the segment is complete (taken); while such a view is
    alive the segment cannot grow (``BufferError``), which is what a taken segment wants.
    Outputs of an object dtype (class labels as Python objects) are kept as arrays instead: raw
    bytes would hold their references uncounted.

    Ids come one of two ways. The service's calls are numbered (``id_prefix`` set): a call keeps
    only its request number and random tag, and the log's writer process makes the id strings
    from them (:mod:`service.prediction_log.ids`), so no per-request string outlives its request.
    Measured head to head (10 runs of 5 s each way, both models): this numbering, together with
    the version runs kept by their start and the HTTP seconds in arrays, serves 1.1-1.4% more
    requests per CPU second than id lists. Calls given as id lists (:func:`segment_of`) keep the list
    (``id_prefix`` None).
    """

    def __init__(
        self, names: list[str], width: int, dtype: np.dtype[Any], id_prefix: str | None = None
    ) -> None:
        self.names = names
        self.width = width
        self.dtype = dtype
        self.id_prefix = id_prefix
        self.rows = 0
        self._feature_bytes = bytearray()  # float64, C order, ``width`` per row
        self._output_bytes: bytearray | None = None if dtype.hasobject else bytearray()
        self._output_parts: list[npt.NDArray[Any]] = []  # object outputs, per call
        # array.array appends as cheaply as a list and becomes a numpy array without a Python loop.
        self.counts = array("q")
        self.created_at = array("d")
        self.model_seconds = array("d")
        self.ids: list[str] = []  # id lists, when not numbered
        self.numbers = array("q")  # request number of each call, when numbered ...
        self.tags = array("Q")  # ... its random tag ...
        self.batch_calls = array("q")  # ... and which calls sent a list (row ids end in -<row>)
        self.versions: list[str] = []  # model version of each run of consecutive calls ...
        self.version_starts = array("q")  # ... and the call each run starts at
        self._version: str | None = None

    @classmethod
    def like(
        cls,
        names: list[str],
        features: npt.NDArray[Any],
        outputs: npt.NDArray[Any],
        id_prefix: str | None = None,
    ) -> Columns:
        return cls(names, features.shape[1], outputs.dtype, id_prefix)

    def accepts(
        self, names: list[str], outputs: npt.NDArray[Any], id_prefix: str | None = None
    ) -> bool:
        return (
            (names is self.names or names == self.names)
            and outputs.dtype == self.dtype
            and id_prefix == self.id_prefix
        )

    @property
    def features(self) -> npt.NDArray[np.float64]:
        """The rows' features, (rows, width): a view of the buffer, valid while it lives."""
        flat = np.frombuffer(self._feature_bytes, dtype=FLOAT64)
        return flat.reshape(self.rows, self.width)

    @property
    def outputs(self) -> npt.NDArray[Any]:
        """The rows' outputs (a view, or for object outputs a new array)."""
        if self._output_bytes is not None:
            return np.frombuffer(self._output_bytes, dtype=self.dtype)
        if not self._output_parts:
            return np.empty(0, dtype=self.dtype)
        return np.concatenate(self._output_parts)

    def add(
        self,
        version: str,
        ids: list[str],
        features: npt.NDArray[Any],
        outputs: npt.NDArray[Any],
        created_at: float,
        model_seconds: float = 0.0,
    ) -> None:
        """One call with its ids (a segment without ``id_prefix``; its request number is unused).

        Any array layout is accepted here; :meth:`add_request` takes the codec's arrays as they are.
        """
        features = np.ascontiguousarray(features, dtype=FLOAT64)
        outputs = np.ascontiguousarray(outputs, dtype=self.dtype)
        self.add_request(version, 0, 0, True, features, outputs, created_at, model_seconds)
        self.ids.extend(ids)

    def add_request(
        self,
        version: str,
        number: int,
        tag: int,
        single: bool,
        features: npt.NDArray[np.float64],
        outputs: npt.NDArray[Any],
        created_at: float,
        model_seconds: float,
    ) -> None:
        """One numbered request (its number and random tag): one record (``single``) or a list.

        ``features`` must be float64, (rows, width), C-contiguous: what the codec decodes.
        ``outputs`` has this segment's dtype (:meth:`accepts`); any layout.
        """
        self._feature_bytes.extend(features)
        if self._output_bytes is None:
            self._output_parts.append(outputs)
        else:
            try:
                self._output_bytes.extend(outputs)
            except TypeError:  # not contiguous (a strided view): no buffer to copy from
                self._output_bytes.extend(np.ascontiguousarray(outputs))
        self.rows += len(outputs)
        call = len(self.counts)
        self.counts.append(len(outputs))
        self.created_at.append(created_at)
        self.model_seconds.append(model_seconds)
        self.numbers.append(number)
        self.tags.append(tag)
        if not single:
            self.batch_calls.append(call)
        if version != self._version:  # a reload: the version changes once per swap
            self._version = version
            self.versions.append(version)
            self.version_starts.append(call)

    @property
    def version_calls(self) -> list[int]:
        """How many calls each run of :attr:`versions` holds."""
        ends = [*self.version_starts[1:], len(self.counts)]
        return [end - start for start, end in zip(self.version_starts, ends)]

    def packed(self) -> Packed:
        """The prediction log's message: views and small arrays, no per-row work.

        Numbered calls travel as their numbers: the writer process makes the id strings (~0.3 us
        per row), so the serving process does not hold the GIL for that once a second.
        """
        numbered = self.id_prefix is not None
        ids = [] if numbered else self.ids
        return Packed(
            names=self.names,
            counts=np.array(self.counts, dtype=np.int64),
            id_prefix=self.id_prefix,
            numbers=np.array(self.numbers if numbered else [], dtype=np.int64),
            tags=np.array(self.tags if numbered else [], dtype=np.uint64),
            batch_calls=np.array(self.batch_calls, dtype=np.int64),
            id_text="".join(ids),
            id_lengths=np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)),
            features=self.features,
            outputs=self.outputs,
            created_at=np.array(self.created_at, dtype=np.float64),
            versions=self.versions,
            version_calls=np.array(self.version_calls, dtype=np.int64),
        )


def segment_of(
    version: str,
    ids: list[str],
    features: npt.NDArray[Any],
    names: list[str],
    outputs: npt.NDArray[Any],
    created_at: float,
) -> Columns:
    """One call with ids of the caller's choosing, as a segment for ``LogShipper.enqueue``: how a
    tool fills a log (``make ci-local``'s labelled log). ValueError if the shapes disagree."""
    outputs = np.asarray(outputs)
    problem = malformed((version, ids, np.asarray(features), names, outputs, created_at))
    if problem is not None:
        raise ValueError(problem)
    segment = Columns.like(names, np.asarray(features), outputs)
    segment.add(version, ids, features, outputs, created_at)
    return segment


class CallBuffer:
    """Successful ``/predict`` calls since the last :meth:`take`, at most ``max_rows`` rows.

    The bound only matters if the thread that takes the calls stops: a call that would pass it is
    dropped and counted (``dropped_rows``), never waited for. Not thread-safe, by design: one
    thread adds and takes (see the module's docstring); the counters may be read from any.
    ``id_prefix`` makes the ids of request numbers (:mod:`service.prediction_log.ids`).
    """

    def __init__(self, max_rows: int, id_prefix: str) -> None:
        self.max_rows = max_rows
        self.id_prefix = id_prefix
        self.dropped_rows = 0
        self._segments: list[Columns] = []
        self._current: Columns | None = None  # the last of _segments
        self._rows = 0

    def add(
        self,
        version: str,
        number: int,
        tag: int,
        single: bool,
        features: npt.NDArray[np.float64],
        names: list[str],
        outputs: npt.NDArray[Any],
        model_seconds: float,
        created_at: float,
    ) -> None:
        rows = len(outputs)
        if self._rows >= self.max_rows:
            self.dropped_rows += rows
            return
        self._rows += rows
        segment = self._current
        # Identity first (the same codec's names, numpy's interned dtypes): ~0.1 us less per call.
        if segment is None or names is not segment.names or outputs.dtype is not segment.dtype:
            segment = self._segment_for(names, features, outputs)
        segment.add_request(
            version, number, tag, single, features, outputs, created_at, model_seconds
        )

    def _segment_for(
        self, names: list[str], features: npt.NDArray[Any], outputs: npt.NDArray[Any]
    ) -> Columns:
        segment = self._current
        if segment is None or not segment.accepts(names, outputs, self.id_prefix):
            segment = self._current = Columns.like(names, features, outputs, self.id_prefix)
            self._segments.append(segment)
        return segment

    @property
    def rows(self) -> int:
        """Rows added since the last take (for a gauge, from any thread)."""
        return self._rows

    def take(self) -> list[Columns]:
        """Everything added so far, oldest first; the buffer starts empty again."""
        segments, self._segments, self._rows = self._segments, [], 0
        self._current = None
        return segments
