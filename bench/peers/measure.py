"""Time one worker process working off a filled queue, by a counter in Redis.

Every system's handler ends with one ``INCR`` of the same key, so one method times them
all: while the worker runs, the benchmark reads the counter (one ``GET``) every
:data:`FINE` seconds around the first and the last increment and every :data:`COARSE`
seconds in between. The run lasts from the first job's start (the first increment,
less the handler's wait) to the last increment, so neither the worker's start-up
(imports, connecting, prefetching) nor its shutdown counts. At those two moments it
reads the CPU time of the worker's process tree (children it has reaped included:
RQ's work horses), of redis-server and of the whole machine from ``/proc``; at the
end, each of its processes' peak resident set (``VmHWM``). The worker is then stopped with
SIGTERM (its warm shutdown), and the counter must equal the jobs enqueued: a system
that ran a job twice or lost one fails the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench import BenchError
from bench.worker_cpu import machine_busy, proc_stat, process_tree

#: Seconds between two reads of the counter near the first and the last increment.
FINE = 0.002
#: Seconds between two reads while the run is well under way.
COARSE = 0.05
#: The last stretch, in estimated seconds left, read at :data:`FINE` resolution.
ENDGAME = 0.3
#: Seconds a worker gets to exit after SIGTERM before its process group is killed.
STOP_TIMEOUT = 20.0
#: Seconds without any progress after which a run is abandoned.
STALL_TIMEOUT = 60.0
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Sample:
    """CPU seconds used so far: the worker's tree, redis-server, the whole machine."""

    at: float
    worker: float
    redis: float
    machine: float


def tree_cpu(pid: int) -> float:
    """User and system CPU seconds of ``pid`` and its descendants, reaped children included."""
    ticks = 0
    for member in process_tree(pid):
        fields = proc_stat(member)
        if fields is not None:  # a short-lived child may have exited since the scan
            ticks += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / _TICK


def _own_cpu(pid: int) -> float:
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0


def sample(worker_pid: int, redis_pid: int) -> Sample:
    """Read the CPU counters of a run now."""
    return Sample(time.perf_counter(), tree_cpu(worker_pid), _own_cpu(redis_pid), machine_busy())


def peak_rss(pid: int) -> tuple[int, int, int]:
    """Peak resident sets in ``pid``'s tree, in bytes: (largest, sum, live processes)."""
    peaks = []
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in (Path("/proc") / str(member) / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) * 1024)
    return max(peaks, default=0), sum(peaks), len(peaks)


@dataclass(frozen=True, slots=True)
class Run:
    """One worker process working off ``events`` jobs. Times in seconds."""

    system: str
    kind: str
    events: int
    #: First job started (first increment less the handler's wait) to last increment.
    busy: float
    #: Process start to its first increment.
    startup: float
    #: CPU seconds while busy: the worker's process tree, redis-server, everything else.
    worker_cpu: float
    redis_cpu: float
    others_cpu: float
    #: Peak resident set of the largest of the worker's processes (the one running the
    #: jobs), of all of them summed (a supervisor, say), and how many there were.
    rss_bytes: int
    rss_all_bytes: int
    processes: int
    #: Seconds the benchmark took to enqueue the jobs (not part of the run).
    fill: float
    exit_status: int | None

    @property
    def events_per_s(self) -> float:
        """Jobs done per second of ``busy`` time."""
        return self.events / self.busy if self.busy > 0 else 0.0

    @property
    def worker_us_per_event(self) -> float:
        """Worker CPU microseconds per job."""
        return self.worker_cpu / self.events * 1e6 if self.events else 0.0

    @property
    def others_load(self) -> float:
        """CPUs kept busy by processes outside the run (and the benchmark) while it ran."""
        return self.others_cpu / self.busy if self.busy > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived figures."""
        found = asdict(self)
        found.update(
            events_per_s=round(self.events_per_s, 1),
            worker_us_per_event=round(self.worker_us_per_event, 1),
            rss_mb=round(self.rss_bytes / 2**20, 1),
            rss_all_mb=round(self.rss_all_bytes / 2**20, 1),
            others_cpus_busy=round(self.others_load, 2),
        )
        return found


def _read(client: redis.Redis, key: str) -> int:
    value = client.get(key)
    return int(value) if value is not None else 0


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def stop_worker(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM the worker and wait; kill its process group if it outstays :data:`STOP_TIMEOUT`.

    Returns its exit status, ``None`` when it had to be killed.
    """
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: started with a new session
        proc.wait()
        return None


@dataclass(frozen=True, slots=True)
class Job:
    """What :func:`measure` runs: a worker command and what its run should do."""

    system: str
    kind: str
    argv: Sequence[str]
    events: int
    #: What the handler waits before its increment (subtracted from the first one).
    wait: float
    fill: float
    #: End the run after this many seconds of jobs, done or not (a calibration), and
    #: count what was done; the jobs left are not checked.
    stop_after: float | None = None


def measure(
    job: Job,
    client: redis.Redis,
    counter: str,
    *,
    redis_pid: int,
    log: Path,
    cwd: Path,
    env: Mapping[str, str],
) -> Run:
    """Start ``job.argv`` on a queue already holding ``job.events`` jobs; time it; stop it.

    Raises:
        BenchError: when the worker exits early, stalls, or the counter ends anywhere but
            at ``job.events`` (a job lost or run twice).
    """
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(job.argv),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        first, last, rss, events = _watch(job, proc, client, counter, redis_pid, log)
    finally:
        status = stop_worker(proc)
    done = _read(client, counter)
    if job.stop_after is None and done != job.events:
        raise BenchError(
            f"{job.system} ({job.kind}): the counter ended at {done} for {job.events} "
            f"jobs: {'a job ran twice' if done > job.events else 'jobs were lost'}"
        )
    busy = last.at - first.at + job.wait
    machine = last.machine - first.machine
    worker, redis_cpu = last.worker - first.worker, last.redis - first.redis
    return Run(
        system=job.system,
        kind=job.kind,
        events=events,
        busy=busy,
        startup=first.at - started,
        worker_cpu=worker,
        redis_cpu=redis_cpu,
        others_cpu=max(0.0, machine - worker - redis_cpu),
        rss_bytes=rss[0],
        rss_all_bytes=rss[1],
        processes=rss[2],
        fill=job.fill,
        exit_status=status,
    )


def _watch(
    job: Job,
    proc: subprocess.Popen[bytes],
    client: redis.Redis,
    counter: str,
    redis_pid: int,
    log: Path,
) -> tuple[Sample, Sample, tuple[int, int, int], int]:
    """Follow the counter until it reaches ``job.events`` (or ``job.stop_after`` passes):
    the first and last samples, the peak RSS, and the jobs done by the last sample."""
    first: Sample | None = None
    seen, progressed = 0, time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise BenchError(
                f"{job.system} ({job.kind}): the worker exited with status "
                f"{proc.returncode} after {seen} of {job.events} jobs:\n{_tail(log)}"
            )
        done = _read(client, counter)
        now = time.perf_counter()
        if done > seen:
            seen, progressed = done, now
            if first is None:
                first = sample(proc.pid, redis_pid)
        if first is not None:
            boxed = job.stop_after is not None and now - first.at >= job.stop_after
            if boxed or done >= job.events:
                return first, sample(proc.pid, redis_pid), peak_rss(proc.pid), done
        if now - progressed > STALL_TIMEOUT:
            raise BenchError(
                f"{job.system} ({job.kind}): no job done for {STALL_TIMEOUT:g} s "
                f"({seen} of {job.events}):\n{_tail(log)}"
            )
        time.sleep(FINE if job.stop_after is not None else _interval(first, done, job.events, now))


def _interval(first: Sample | None, done: int, events: int, now: float) -> float:
    """:data:`FINE` until the first increment and for the last :data:`ENDGAME` seconds."""
    if first is None or done == 0:
        return FINE
    rate = done / max(now - first.at, 1e-6)
    left = (events - done) / rate
    return FINE if left < ENDGAME else min(COARSE, left / 4)
