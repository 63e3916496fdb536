"""The prediction log's writer process: turning predictions into database rows, off the serving GIL.

Why a process and not a thread: measured on one core, a writer thread that JSON-encodes and inserts
a few hundred rows every 200 ms took the GIL from the event loop often enough to move an unloaded
request's p99 from 0.44 ms (writer asleep) to ~4 ms. The serving process now only keeps the queued
rows in a few column buffers (:class:`Packed`) and sends them through a pipe; this process
does the per-row work at a lower CPU priority, so on a saturated core requests go first.

Protocol (tuples over a ``multiprocessing`` pipe):

- service to writer: ``("rows", pickled Packed, n)`` followed by ``n`` raw buffers (see
  :func:`send_packed`), ``("flush", token)``, ``("stop",)``
- writer to service: ``("done", rows, written, errors, lost)``, ``("flushed", token)``, ``("stopped",)``

Messages are handled in order, so "flushed" means every row sent before the flush is committed.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import pickle
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from sqlalchemy.exc import SQLAlchemyError

from service.log_store import BatchWriter, Call, Row, WriteResult, create_log_engine
from service.prediction_ids import numbered_ids

logger = logging.getLogger("service.prediction_log")

# While it keeps up, the writer runs as SCHED_IDLE: the kernel preempts an idle-class task as soon
# as a normal one (the event loop woken by a request) becomes runnable, instead of letting it finish
# its slice. A saturated core starves an idle-class task, so when nothing has been acknowledged for
# BACKLOG_GRACE_S, or a flush is waiting, the service raises it to SCHED_OTHER at this niceness
# (boost_writer; ~10% of a contended core, enough for ~15 us per row at the full single-core
# request rate): rows are written rather than dropped. It goes back once its pipe is empty.
# Raised, it would run in whole scheduler slices while the requests on its core wait (~0.85 ms per
# run on average, measured at 64 connections), so it yields the core between inserts
# (BatchWriter's pause, every ~0.4 ms of inserting): runs of ~0.38 ms, and the p99/p50 ratio at
# 64 connections went from 2.56 to 2.36 (median of 8 alternating runs of 8 s).
WRITER_NICENESS = 10
BACKLOG_GRACE_S = 1.0
CAP_SYS_NICE = 23  # linux/capability.h


def can_raise_priority(niceness: int) -> bool:
    """Whether this process may go back from SCHED_IDLE to SCHED_OTHER at ``niceness``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:") and int(line.split()[1], 16) & (1 << CAP_SYS_NICE):
                    return True
    except (OSError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # not a Unix
        return False
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return bool(soft == resource.RLIM_INFINITY or soft >= 20 - niceness)


class _Background:
    """Puts the writer into SCHED_IDLE whenever it has nothing queued (the service takes it out).

    Leaving SCHED_IDLE needs CAP_SYS_NICE or a high enough RLIMIT_NICE (a container's root has
    neither by default). Without it the writer would be stuck idle-class and starve on a saturated
    core, so it stays an ordinary nice task instead.
    """

    def __init__(self, niceness: int) -> None:
        self.supported = (
            hasattr(os, "sched_setscheduler")
            and hasattr(os, "SCHED_IDLE")
            and can_raise_priority(niceness)
        )
        if niceness > 0:
            try:
                os.nice(niceness)
            except OSError as exc:  # not permitted: only latency under load suffers
                logger.info("writer niceness unchanged (%s)", exc)
        self.enter()

    def enter(self) -> None:
        # Read back, not remembered: the service may have raised this process meanwhile.
        if not self.supported or os.sched_getscheduler(0) == os.SCHED_IDLE:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            logger.warning("writer scheduling policy unchanged (%s)", exc)
            self.supported = False


def boost_writer(pid: int) -> bool:
    """Move the writer out of SCHED_IDLE from the service process: it knows first when the writer
    is starved (no acknowledgement for a while, or someone waiting on a flush), whereas a starved
    idle-class writer may not run long enough to notice. False when not permitted."""
    try:
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
        return True
    except (AttributeError, OSError):
        return False


@dataclass
class Packed:
    """Calls that share feature names, as a few flat buffers.

    Pickling happens in the serving process with the GIL held for the whole ``pickle.dumps``, so
    the message must be cheap to pickle: arrays and one string pickle as memory copies, whereas a
    list of 3,000 id strings took 0.7-1.4 ms (measured), long enough to delay requests. The ids
    travel as request numbers (the service's calls, :mod:`service.prediction_ids`) or as one text
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


def json_rows(matrix: npt.NDArray[Any]) -> list[str]:
    """Each row of a 2-d array as a JSON array, the same text ``orjson.dumps(row)`` writes.

    One orjson call for the whole matrix, split at the row boundaries: ~0.3 us per row against
    ~0.65 us for one call per row (measured, 11 columns). Numbers contain no brackets, so the
    boundaries are exactly the ``],[`` between rows.
    """
    if len(matrix) == 0:
        return []
    text = orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return text[1:-1].replace("],[", "]\n[").split("\n")


def json_values(values: npt.NDArray[Any]) -> list[str]:
    """Each element of a 1-d array as a JSON value (numbers in one orjson call, split at the
    commas; other dtypes, e.g. text class labels, one call each)."""
    if len(values) == 0:
        return []
    if values.dtype.kind in "biuf":
        return orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")
    return [_json_value(value) for value in values.tolist()]


def _json_value(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # a lone surrogate, which orjson (strict UTF-8) refuses; json escapes it
        return json.dumps(value)


def packed_rows(packed: Packed, feature_set: int) -> list[Row]:
    """All rows of a message, built column by column (a few list comprehensions for the whole
    batch instead of one pass per call: single-row calls made per-call work dominate)."""
    features = json_rows(packed.features)
    outputs = json_values(packed.outputs)
    created = np.repeat(packed.created_at, packed.counts).tolist()
    sets = itertools.repeat(feature_set, packed.rows)
    return list(zip(packed.ids(), created, packed.row_versions(), sets, features, outputs))


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


def write_packed(writer: BatchWriter, packed: Packed) -> WriteResult:
    """One transaction for the whole message; if it fails (e.g. a duplicate id), call by call."""
    try:
        writer.insert_rows(packed_rows(packed, writer.feature_set(packed.names)))
        return WriteResult(written=packed.rows)
    except SQLAlchemyError as exc:
        logger.warning("batch insert failed (%s); retrying call by call", type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - e.g. an output orjson cannot encode
        logger.warning("batch conversion failed (%s); retrying call by call", exc)
    return writer.write(packed.unpack())


def run_writer(url: str, connection: Connection, niceness: int = WRITER_NICENESS) -> None:
    """Entry point of the writer process: write what arrives until told to stop or orphaned.

    Ctrl-C and SIGTERM reach the whole process group; the writer ignores them so that the rows
    still queued are written when the service shuts down and sends "stop". A service that dies
    without stopping it closes the pipe, which ends this loop.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [prediction-log-writer] %(message)s"
    )
    background = _Background(niceness)
    # Every shipment allocates a tuple per row, freed by reference counting (no cycles): at the
    # default thresholds the cyclic collector ran every 700 of them and doubled the time to build
    # a shipment's rows (0.8 -> up to 2 us per row, measured). It still runs, 140x less often.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    engine = create_log_engine(url)
    writer = BatchWriter(engine, pause=getattr(os, "sched_yield", None))  # not on Windows
    try:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                return  # the service process is gone
            kind = message[0]
            if kind == "rows":
                try:
                    packed = receive_packed(connection, message[1], message[2])
                except (EOFError, OSError):
                    return  # the service died in the middle of sending
                result = write_packed(writer, packed)
                connection.send(("done", packed.rows, result.written, result.errors, result.lost))
            elif kind == "flush":
                connection.send(("flushed", message[1]))
            elif kind == "stop":
                connection.send(("stopped",))
                return
            else:
                logger.error("unknown message %r ignored", kind)
            if not connection.poll(0):
                background.enter()
    finally:
        engine.dispose()
        connection.close()
