"""CPU accounting from /proc: who used the cores during a measurement (server, client, others).

``CpuMeter`` splits the cores' busy time between the server's process group, the load generators
(this script's children), this script and everyone else (the "foreign" share); ``group_ticks``
is a process group's CPU time, ``idle_check`` the machine's load before a run, and
``autogroup_enabled`` whether the kernel gives each session its own scheduler group.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from serving_bench.settings import CLIENT_CPU, CLOCK_TICKS, SERVER_CPU


def core_ticks() -> dict[str, tuple[int, int]]:
    """Per core (busy, steal) jiffies from /proc/stat."""
    cores: dict[str, tuple[int, int]] = {}
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
                cores[name[3:]] = (user + nice + system + irq + softirq, steal)
    return cores


def group_ticks(pgid: int) -> int:
    """CPU jiffies (user + system) of every live process in a process group."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total


class CpuMeter:
    """Who used the CPUs during one measurement: the server, the client, or someone else.

    Another process on the machine (a test suite, a build) silently halves a benchmark; the
    "foreign" share (core time not used by the server, the load generator or this script; the
    idle contenders' ~0.2% each included) is printed next to every figure so a disturbed run is
    visible rather than believed. Interference from outside the VM does not show here: that is
    what the interleaved rounds are for.
    """

    def __init__(self, server_pgid: int | None) -> None:
        self.pgid = server_pgid
        self.wall = time.perf_counter()
        self.cores = core_ticks()
        self.server = group_ticks(server_pgid) if server_pgid else 0
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.me = resource.getrusage(resource.RUSAGE_SELF)

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        cores = core_ticks()
        server = (group_ticks(self.pgid) - self.server) / CLOCK_TICKS if self.pgid else 0.0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        client = (children.ru_utime + children.ru_stime) - (
            self.children.ru_utime + self.children.ru_stime
        )
        own = (me.ru_utime + me.ru_stime) - (self.me.ru_utime + self.me.ru_stime)
        busy = {k: (cores[k][0] - self.cores[k][0]) / CLOCK_TICKS for k in cores}
        steal = sum(cores[k][1] - self.cores[k][1] for k in cores) / CLOCK_TICKS
        foreign = max(0.0, sum(busy.values()) - server - client - own)
        return {
            "wall_s": round(wall, 2),
            "server_core_busy_pct": round(100 * busy.get(SERVER_CPU, 0.0) / wall, 1),
            "client_core_busy_pct": round(100 * busy.get(CLIENT_CPU, 0.0) / wall, 1),
            "server_cpu_pct": round(100 * server / wall, 1),
            "client_cpu_pct": round(100 * (client + own) / wall, 1),
            "foreign_cpu_pct": round(100 * foreign / wall, 1),
            "steal_pct": round(100 * steal / wall, 1),
        }


def idle_check(seconds: float = 1.0) -> float:
    """Busy share of the whole machine before starting (another job would skew every figure)."""
    before = core_ticks()
    time.sleep(seconds)
    after = core_ticks()
    busy = sum(after[k][0] - before[k][0] for k in after) / CLOCK_TICKS
    return round(100 * busy / seconds, 1)


def autogroup_enabled() -> bool | None:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return None
