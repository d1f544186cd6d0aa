"""Time one worker process draining a queue, as seen from Redis, and what it cost Redis.

The same method for stock RQ and hookline: while the worker process runs, a probe
reads the queue's progress from Redis every :data:`PROBE_INTERVAL` seconds, in one
round trip (a small Lua script). The drain is timed from the first sample in which a
job has left the queue to the first in which every job is finished, so neither the
process's start-up (imports, connecting, registering) nor its exit is counted; both
are reported separately. Redis's own counters (``CONFIG RESETSTAT`` before, ``INFO``
after) give the commands and socket reads the worker caused, the probe's removed, and
``/proc`` the CPU time the worker process and redis-server spent between those samples.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from bench import BenchError
from bench.worker_cpu import CpuReading, CpuUse, process_tree, read_cpu
from hookline.redis import keys

#: Seconds between two probes of a queue's progress (the timing resolution).
PROBE_INTERVAL = 0.002

# KEYS: RQ queue, finished registry, failed registry. Returns waiting, finished, 0.
_RQ_PROBE = """
return {redis.call('LLEN', KEYS[1]),
        redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3]), 0}
"""

# KEYS: queue, workers set. ARGV: worker key prefix, jobs-list suffix.
# Returns waiting, jobs held by workers (claimed, not yet acknowledged), workers seen.
_HOOKLINE_PROBE = """
local held, seen = 0, 0
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  held = held + redis.call('LLEN', ARGV[1] .. name .. ARGV[2])
  seen = seen + 1
end
return {redis.call('LLEN', KEYS[1]), held, seen}
"""

#: (waiting jobs, unfinished jobs, Redis commands the probe itself ran) from a probe reply.
Reader = Callable[[Sequence[int]], tuple[int, int, Counter[str]]]


@dataclass(frozen=True, slots=True)
class Probe:
    """How to read one queue's progress in one round trip."""

    script: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    jobs: int
    read: Reader


def rq_probe(client: redis.Redis, queue: str, jobs: int) -> Probe:
    """Progress of stock RQ jobs: a job is finished once in the finished or failed registry."""

    def read(reply: Sequence[int]) -> tuple[int, int, Counter[str]]:
        waiting, finished, _ = reply
        return waiting, jobs - finished, Counter({"llen": 1, "zcard": 2})

    registries = (
        FinishedJobRegistry(queue, connection=client).key,
        FailedJobRegistry(queue, connection=client).key,
    )
    return Probe(_RQ_PROBE, (keys.rq_queue(queue), *registries), (), jobs, read)


def hookline_probe(queue: str, jobs: int) -> Probe:
    """Progress of hookline jobs: a job is finished once no worker's list holds it.

    A worker claims (queue → its list) and acknowledges (removes it from its list,
    after the done markers are written) atomically, so a job is always in one or the other.
    """

    def read(reply: Sequence[int]) -> tuple[int, int, Counter[str]]:
        waiting, held, seen = reply
        return waiting, waiting + held, Counter({"smembers": 1, "llen": 1 + seen})

    prefix = keys.worker("")
    suffix = keys.worker_jobs("w").removeprefix(keys.worker("w"))
    return Probe(
        _HOOKLINE_PROBE, (keys.rq_queue(queue), keys.workers()), (prefix, suffix), jobs, read
    )


@dataclass(frozen=True, slots=True)
class Drain:
    """One worker process draining ``jobs`` jobs carrying ``events`` events.

    Times are in seconds: ``startup`` from the process's start to its first job,
    ``busy`` from then to its last job finished, ``shutdown`` from then to its exit.
    """

    label: str
    events: int
    jobs: int
    startup: float
    busy: float
    shutdown: float
    #: Redis commands run on the worker's behalf, by name (inside scripts included).
    commands: dict[str, int] = field(default_factory=dict)
    #: Socket reads Redis processed for the worker: about one per round trip.
    reads: int = 0
    #: CPU time while busy: ``worker`` (its process tree), ``redis``, ``bench``, ``others``.
    cpu: CpuUse | None = None

    @property
    def worker_cpu(self) -> float:
        """CPU seconds of the worker process while busy (0: unknown; 1/100 s resolution)."""
        return self.cpu.by.get("worker", 0.0) if self.cpu else 0.0

    @property
    def redis_cpu(self) -> float:
        """CPU seconds of redis-server while the worker was busy."""
        return self.cpu.by.get("redis", 0.0) if self.cpu else 0.0

    @property
    def others_load(self) -> float:
        """CPUs kept busy by the rest of the machine while the worker was busy."""
        return self.cpu.load("others") if self.cpu else 0.0

    @property
    def events_per_s(self) -> float:
        """Events finished per second of ``busy`` time."""
        return self.events / self.busy if self.busy > 0 else 0.0

    @property
    def wall(self) -> float:
        """Process start to exit."""
        return self.startup + self.busy + self.shutdown

    @property
    def events_per_cpu_s(self) -> float:
        """Events per CPU second of the worker process: what a busy machine does not change."""
        return self.events / self.worker_cpu if self.worker_cpu > 0 else 0.0

    def per_event(self, value: float) -> float:
        """``value`` divided by the events drained."""
        return value / self.events if self.events else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        total = sum(self.commands.values())
        return {
            "label": self.label,
            "events": self.events,
            "jobs": self.jobs,
            "events_per_s": round(self.events_per_s, 1),
            "busy_s": round(self.busy, 4),
            "startup_s": round(self.startup, 4),
            "shutdown_s": round(self.shutdown, 4),
            "wall_s": round(self.wall, 4),
            "events_per_worker_cpu_s": round(self.events_per_cpu_s, 1),
            "worker_cpu_us_per_event": round(self.per_event(self.worker_cpu) * 1e6, 1),
            "redis_cpu_us_per_event": round(self.per_event(self.redis_cpu) * 1e6, 1),
            "other_processes_cpus_busy": round(self.others_load, 2),
            "redis_commands_per_event": round(self.per_event(total), 2),
            "redis_round_trips_per_event": round(self.per_event(self.reads), 2),
            "redis_commands": dict(sorted(self.commands.items(), key=lambda kv: -kv[1])),
        }


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _worker_costs(
    client: redis.Redis, samples: int, probe_commands: Counter[str]
) -> tuple[dict[str, int], int]:
    """Commands and reads since ``CONFIG RESETSTAT``, minus the probe's and this ``INFO``."""
    info = client.info("stats", "commandstats")
    reads = int(info["total_reads_processed"]) - samples - 1
    counted = Counter[str]()
    for name, stat in info.items():
        if name.startswith("cmdstat_"):
            counted[name.removeprefix("cmdstat_")] = int(stat["calls"])
    probe_commands["evalsha"] += samples
    probe_commands["info"] += 1
    probe_commands["config|resetstat"] += 1
    counted.subtract(probe_commands)
    return {name: n for name, n in counted.items() if n > 0}, reads


def measure_drain(
    label: str,
    argv: Sequence[str],
    client: redis.Redis,
    probe: Probe,
    *,
    events: int,
    log: Path,
    cwd: Path,
    env: Mapping[str, str],
    redis_pid: int,
    timeout: float = 300.0,
) -> Drain:
    """Run ``argv`` (a worker that exits once the queue is empty) and time its drain.

    CPU time is read when the first job leaves the queue and when the last finishes,
    for the worker's process tree and for ``redis_pid``.

    Raises:
        BenchError: when the worker fails, does not finish every job, or overruns ``timeout``.
    """
    sha = client.script_load(probe.script)
    evalsha_args = (sha, len(probe.keys), *probe.keys, *probe.args)
    client.config_resetstat()
    samples, probe_commands = 0, Counter[str]()
    first: float | None = None
    last: float | None = None
    groups: dict[str, list[int]] = {}
    cpu_at_first: CpuReading | None = None
    cpu_at_last: CpuReading | None = None
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                exited = proc.poll() is not None
                before = time.perf_counter()
                reply = cast(list[int], client.evalsha(*evalsha_args))  # type: ignore[arg-type]
                at = (before + time.perf_counter()) / 2
                waiting, unfinished, ran = probe.read(reply)
                samples += 1
                probe_commands.update(ran)
                if first is None and waiting < probe.jobs:
                    first, groups = at, {"worker": process_tree(proc.pid), "redis": [redis_pid]}
                    cpu_at_first = read_cpu(groups)
                if first is not None and last is None and unfinished == 0:
                    last = at
                    cpu_at_last = read_cpu(groups)
                if exited:
                    ended = at
                    break
                if at - started > timeout:
                    raise BenchError(f"{label}: did not finish within {timeout:g} s")
                time.sleep(PROBE_INTERVAL)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"{label}: exited with status {proc.returncode}:\n{_tail(log)}")
    if first is None or last is None or cpu_at_first is None or cpu_at_last is None:
        raise BenchError(f"{label}: exited with {unfinished} of {probe.jobs} jobs unfinished")
    commands, reads = _worker_costs(client, samples, probe_commands)
    return Drain(
        label=label,
        events=events,
        jobs=probe.jobs,
        startup=first - started,
        busy=last - first,
        shutdown=ended - last,
        commands=commands,
        reads=reads,
        cpu=CpuUse.between(cpu_at_first, cpu_at_last),
    )
