"""The prediction log's writer process: turning predictions into database rows, off the serving GIL.

Why a process and not a thread: measured on one core, a writer thread that JSON-encodes and inserts
a few hundred rows every 200 ms took the GIL from the event loop often enough to move an unloaded
request's p99 from 0.44 ms (writer asleep) to ~4 ms. The serving process now only keeps the queued
rows in a few column buffers (:class:`~service.prediction_log.wire.Packed`) and sends them
through a pipe; this process does the per-row work at a lower CPU priority, so on a saturated
core requests go first.

Protocol (tuples over a ``multiprocessing`` pipe):

- service to writer: ``("rows", pickled Packed, n)`` followed by ``n`` raw buffers (see
  :func:`send_packed`), ``("flush", token)``, ``("stop",)``
- writer to service: ``("done", rows, written, errors, lost)``, ``("flushed", token)``, ``("stopped",)``

Messages are handled in order, so "flushed" means every row sent before the flush is committed.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from multiprocessing.connection import Connection

from service.prediction_log.inserts import BatchWriter, write_packed
from service.prediction_log.tables import create_log_engine
from service.prediction_log.wire import receive_packed

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
