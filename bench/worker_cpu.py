"""CPU time of named processes, and of the whole machine, over a stretch of a benchmark.

On a machine shared with other work, events/s moves with the neighbours' load; CPU
time per event hardly does. Knowing how much CPU everything else took during a run
says how far its events/s can be trusted. Linux only (``/proc``).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Clock ticks per second, the unit of the CPU times in ``/proc``.
TICK = os.sysconf("SC_CLK_TCK")
#: What :class:`CpuUse` calls the time this process (the benchmark) and its waited-for
#: children (wrk, once it has exited) used.
SELF = "bench"


def proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state first), or ``None``."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User plus system CPU time used so far by ``pids``; ``None`` if one has exited."""
    ticks = 0
    for pid in pids:
        if (fields := proc_stat(pid)) is None:
            return None
        ticks += int(fields[11]) + int(fields[12])
    return ticks / TICK


def machine_busy() -> float:
    """CPU seconds every CPU of the machine has spent busy (not idle, not waiting on I/O)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK


def _own() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True, slots=True)
class CpuReading:
    """CPU seconds used so far: per named group of processes, by us, by the machine."""

    at: float
    groups: dict[str, float | None]
    own: float
    machine: float


def read_cpu(groups: Mapping[str, Sequence[int]]) -> CpuReading:
    """Read the CPU time of each named group of process ids, ours, and the machine's."""
    return CpuReading(
        at=time.perf_counter(),
        groups={name: cpu_seconds(pids) for name, pids in groups.items()},
        own=_own(),
        machine=machine_busy(),
    )


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds used between two readings, over ``seconds`` of wall time.

    ``by`` holds each group's, :data:`SELF`'s, and ``"others"``: every other process
    of the machine. A group whose process exited in between is left out (unknown).
    """

    seconds: float
    by: dict[str, float]

    @classmethod
    def between(cls, start: CpuReading, end: CpuReading) -> CpuUse:
        """What was used from ``start`` to ``end``."""
        by = {
            name: after - before
            for name, before in start.groups.items()
            if before is not None and (after := end.groups.get(name)) is not None
        }
        by[SELF] = end.own - start.own
        by["others"] = max(0.0, (end.machine - start.machine) - sum(by.values()))
        return cls(end.at - start.at, by)

    def load(self, name: str) -> float:
        """CPUs ``name`` kept busy on average (1.0: one CPU all the time)."""
        return self.by.get(name, 0.0) / self.seconds if self.seconds > 0 else 0.0
