"""Where the CPU went during a run: the receiver, Redis, wrk, and everything else.

On a small machine the load generator, Redis and the receiver share the cores, and
anything else running skews the figures; these shares tell a reader how much. Linux
only (``/proc``); elsewhere :func:`start` returns ``None``.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK


def _with_children(pid: int) -> tuple[int, ...]:
    """``pid`` and its children running now (the receivers under ``serve --processes``)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return tuple(found)


def _machine() -> float:
    """Busy CPU seconds of the whole machine so far (all cores; idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / _TICK


def _children() -> float:
    """CPU seconds of this process's waited-for children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class CpuShare:
    """Average CPU use during a run, in cores (1.0: one core busy the whole time)."""

    server: float
    redis: float
    wrk: float
    other: float
    #: Receiver CPU per answered request, in microseconds.
    server_us_per_request: float


@dataclass(frozen=True, slots=True)
class CpuMeter:
    """Readings taken at the start of a run, to subtract at its end."""

    server_pids: tuple[int, ...]
    redis_pids: tuple[int, ...]
    server: float
    redis: float
    children: float
    machine: float

    def stop(self, seconds: float, requests: int) -> CpuShare:
        """Shares over the ``seconds`` since :func:`start`, given the requests answered."""
        server = sum(process_seconds(pid) for pid in self.server_pids) - self.server
        redis = sum(process_seconds(pid) for pid in self.redis_pids) - self.redis
        wrk = _children() - self.children
        machine = _machine() - self.machine
        return CpuShare(
            server=round(server / seconds, 3),
            redis=round(redis / seconds, 3),
            wrk=round(wrk / seconds, 3),
            other=round(max(0.0, machine - server - redis - wrk) / seconds, 3),
            server_us_per_request=round(server * 1e6 / requests, 1) if requests else 0.0,
        )


def start(server_pid: int, *redis_pids: int) -> CpuMeter | None:
    """Take the starting readings, or ``None`` where ``/proc`` is not available.

    Redis's share is that of every process in ``redis_pids`` (a primary and its replicas);
    the server's, that of ``server_pid`` and of its children.
    """
    try:
        server_pids = _with_children(server_pid)
        return CpuMeter(
            server_pids,
            redis_pids,
            sum(process_seconds(pid) for pid in server_pids),
            sum(process_seconds(pid) for pid in redis_pids),
            _children(),
            _machine(),
        )
    except OSError:
        return None
