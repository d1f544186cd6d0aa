"""One step of the load benchmark: a steady rate for a while, and whether the pipeline held it.

The receiver and the workers stay up from step to step (see :class:`Pipeline`); a step
posts a fresh pool of pre-signed events at one rate with ``worker_load.lua`` (open loop,
as :mod:`bench.worker_latency` does), samples the queue's depth meanwhile, waits until
everything accepted has been handled, and leaves Redis as it found it for the next step.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis

from bench import BenchError
from bench.load_redis import aof_rewrites, forks_cpu, reset
from bench.pool import write_pool
from bench.worker_cpu import SELF, CpuUse, process_tree, read_cpu
from bench.worker_drain import hookline_probe
from bench.worker_handlers import LATENCY_KEY, LATENCY_SOURCE
from bench.worker_latency import (
    CATCH_UP_TIMEOUT,
    Latency,
    Percentiles,
    read_handled,
    run_load,
    wait_handled,
)
from bench.wrk import WrkResult
from hookline.config.settings import DEFAULT_QUEUE

#: Worker processes under the one ``hookline work`` supervisor, as the issue asks.
WORKER_PROCESSES = 2
#: Seconds between two readings of the queue's depth while the load runs.
SAMPLE_EVERY = 0.1
#: Least share of requests answered 2xx for a step to count as held.
MIN_2XX = 0.99
#: Least share of the offered rate answered over a step for it to count as held: below
#: it wrk's schedule fell behind, the receiver taking less than it was offered.
MIN_ACHIEVED = 0.995
#: Most growth of the backlog's floor over a step's second half, as a share of the offered
#: rate.
MAX_GROWTH = 0.01
#: Growth in events/s always tolerated, whatever the rate (sampling noise at low rates).
GROWTH_FLOOR = 5.0
#: Most backlog at the end of a step, in seconds of arrivals.
MAX_BACKLOG_S = 1.0
#: Samples this close to the end of the load are left out: wrk is stopping.
END_MARGIN = 0.2


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The processes under load, started once and loaded step after step."""

    client: redis.Redis
    wrk: str
    #: Where wrk posts: the receiver's latency source.
    url: str
    receiver_pid: int
    #: The ``hookline work`` supervisor; its worker processes are its children.
    workers_pid: int
    redis_pid: int
    #: Where the pools are written.
    work: Path

    def cpu_groups(self) -> dict[str, list[int]]:
        """The process groups whose CPU time a step reads (worker processes included)."""
        return {
            "receiver": process_tree(self.receiver_pid),
            "workers": process_tree(self.workers_pid),
            "redis": [self.redis_pid],
        }


@dataclass(frozen=True, slots=True)
class Depth:
    """The queue while the load ran: ``(seconds since start, jobs, handled)`` samples.

    ``jobs`` counts those waiting in the queue and those claimed by a worker and not
    yet finished; ``handled`` the events whose handler has started.
    """

    samples: tuple[tuple[float, int, int], ...]
    duration: float
    #: Events per job over the step, to express a depth in jobs as events.
    events_per_job: float

    def _window(self, start: float, end: float | None = None) -> list[tuple[float, int, int]]:
        """The samples from ``start`` to ``end`` seconds (the load's end, by default)."""
        stop = self.duration - END_MARGIN if end is None else end
        return [s for s in self.samples if start <= s[0] <= stop]

    def _slope(self, column: int) -> float:
        window = self._window(self.duration / 2)
        if len(window) < 3:
            return 0.0
        fit = statistics.linear_regression([s[0] for s in window], [s[column] for s in window])
        return fit.slope

    def floor(self, quarter: int) -> float:
        """The shallowest the backlog got in that quarter of the step (1 to 4), in events."""
        window = self._window(self.duration * (quarter - 1) / 4, self.duration * quarter / 4)
        return min((s[1] for s in window), default=0) * self.events_per_job

    @property
    def growth(self) -> float:
        """How fast the backlog's floor rose from the second quarter to the last, events/s.

        Near capacity the depth comes in bursts of a second or so that drain again; its
        floor, the shallowest it got, rises only when the backlog grows for good.
        """
        return (self.floor(4) - self.floor(2)) / (self.duration / 2)

    @property
    def handled_per_s(self) -> float:
        """Events whose handler started per second, over the second half."""
        return self._slope(2)

    @property
    def end_backlog(self) -> float:
        """Events in the queue or in the workers' hands over the last quarter, on average."""
        window = self._window(self.duration * 0.75)
        return statistics.fmean(s[1] for s in window) * self.events_per_job if window else 0.0

    @property
    def deepest(self) -> int:
        """The most jobs waiting or held at once."""
        return max((s[1] for s in self.samples), default=0)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary, samples included (seconds, jobs)."""
        return {
            "growth_events_per_s": round(self.growth, 1),
            "floor_events_by_quarter": [round(self.floor(q), 1) for q in (1, 2, 3, 4)],
            "handled_per_s_second_half": round(self.handled_per_s, 1),
            "end_backlog_events": round(self.end_backlog, 1),
            "deepest_jobs": self.deepest,
            "samples_s_jobs": [[round(t, 2), jobs] for t, jobs, _ in self.samples],
        }


@dataclass(frozen=True, slots=True)
class Step:
    """One rate, run for a while: the load, the latencies, the queue, and the verdict."""

    latency: Latency
    depth: Depth
    #: Why the step does not count as held; empty when it does.
    failures: tuple[str, ...]
    #: Size of each request's body.
    body_bytes: int
    #: Times Redis rewrote its append-only file during the step (set off by its writes).
    aof_rewrites: int

    @property
    def rate(self) -> float:
        """The offered rate, events/s."""
        return self.latency.rate

    @property
    def held(self) -> bool:
        """Whether the pipeline kept up with the rate."""
        return not self.failures

    @property
    def late_share(self) -> float:
        """Share of the requests sent over 5 ms after their slot."""
        return self.latency.late / self.latency.wrk.sent if self.latency.wrk.sent > 0 else 0.0

    @property
    def others(self) -> float:
        """CPUs kept busy by processes outside the benchmark while the load ran."""
        return self.latency.cpu.load("others")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            **self.latency.as_dict(),
            "late_share": round(self.late_share, 4),
            "aof_rewrites": self.aof_rewrites,
            "held": self.held,
            "failures": list(self.failures),
            "queue": self.depth.as_dict(),
        }


def judge(rate: float, wrk: WrkResult, depth: Depth) -> tuple[str, ...]:
    """Why a step at ``rate`` was not held, in words; empty when it was.

    Requests sent late are not a failure in themselves: one is late when all the
    connections were waiting on answers at its slot, which a burst of slow answers
    does without the receiver falling behind. Falling behind shows as an answered
    rate under the offered one.
    """
    found = []
    answered = wrk.requests
    if wrk.exhausted:
        found.append(f"the request pool ran out ({wrk.exhausted} requests)")
    if answered == 0 or wrk.answered_2xx < MIN_2XX * answered:
        found.append(f"{wrk.answered_2xx:,} of {answered:,} answered 2xx")
    if wrk.rps < MIN_ACHIEVED * rate:
        found.append(f"answered {wrk.rps:,.0f}/s of {rate:,.0f}/s offered")
    limit = max(MAX_GROWTH * rate, GROWTH_FLOOR)
    if depth.growth > limit:
        found.append(f"backlog grew {depth.growth:,.0f} events/s (limit {limit:,.0f})")
    if depth.end_backlog > MAX_BACKLOG_S * rate:
        found.append(f"backlog {depth.end_backlog:,.0f} events at the end (> {MAX_BACKLOG_S:g} s)")
    return tuple(found)


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children: wrk, once each run has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _Sampler:
    """Reads the jobs waiting or held, and the events handled, in one round trip."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.probe = hookline_probe(DEFAULT_QUEUE, 0)
        self.sha = client.script_load(self.probe.script)

    def read(self) -> tuple[int, int]:
        """(jobs waiting or held, events handled) now."""
        p = self.probe
        with self.client.pipeline(transaction=False) as pipe:
            pipe.evalsha(self.sha, len(p.keys), *p.keys, *p.args)
            pipe.llen(LATENCY_KEY)
            reply, handled = pipe.execute()
        _, unfinished, _ = p.read(cast(Sequence[int], reply))
        return unfinished, int(handled)

    def wait_empty(self, timeout: float) -> None:
        """Wait until no job waits or is held (late commits of unanswered requests too)."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while True:
            now = time.monotonic()
            if self.read()[0] > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= 0.3:
                return
            if now > deadline:
                raise BenchError(f"load: the queue did not empty within {timeout:g} s")
            time.sleep(0.05)


def run_step(pipeline: Pipeline, rate: float, duration: float, tag: str) -> Step:
    """Post ``rate`` events/s for ``duration`` seconds; then wait until all are handled.

    Raises:
        BenchError: when wrk fails, or the workers do not catch up within
            :data:`~bench.worker_latency.CATCH_UP_TIMEOUT`.
    """
    client = pipeline.client
    count = int(rate * duration * 1.2) + 100
    pool = write_pool(pipeline.work / f"pool-{tag}", tag=tag, threads=1, per_thread=count)
    sampler = _Sampler(client)
    client.delete(LATENCY_KEY)
    client.config_resetstat()
    groups = pipeline.cpu_groups()
    wrk_before, forks_before = _children_cpu(), forks_cpu(pipeline.redis_pid)
    before = read_cpu(groups)
    samples = []
    with ThreadPoolExecutor(1) as executor:
        start = time.monotonic()
        future = executor.submit(
            run_load, pipeline.wrk, pipeline.url, pool, rate=rate, duration=duration
        )
        while not future.done():
            depth_jobs, handled_so_far = sampler.read()
            samples.append((time.monotonic() - start, depth_jobs, handled_so_far))
            time.sleep(SAMPLE_EVERY)
        result, late = future.result()
    after = read_cpu(groups)
    wrk_cpu = _children_cpu() - wrk_before
    forks = forks_cpu(pipeline.redis_pid) - forks_before
    rewrites = aof_rewrites(client)
    catch_up = wait_handled(client, result.answered_2xx, CATCH_UP_TIMEOUT)
    sampler.wait_empty(CATCH_UP_TIMEOUT)
    # The receiver writes each job with one HSET, inside its commit script.
    jobs_written = int(client.info("commandstats").get("cmdstat_hset", {}).get("calls", 0))
    handled = read_handled(client)
    client.delete(LATENCY_KEY)
    shutil.rmtree(pool.directory, ignore_errors=True)
    reset(client, LATENCY_SOURCE)
    if len(handled) < 2:
        raise BenchError(f"load: too few events were handled at {rate:g} events/s to measure")
    cpu = _attribute(CpuUse.between(before, after), wrk=wrk_cpu, redis_forks=forks)
    depth = Depth(
        tuple(samples),
        duration,
        result.answered_2xx / jobs_written if jobs_written else 1.0,
    )
    latency = Latency(
        rate=rate,
        wrk=result,
        late=late,
        handled=len(handled),
        jobs=jobs_written,
        max_depth=depth.deepest,
        catch_up_s=catch_up,
        to_handler=Percentiles.of([started - received for started, received in handled]),
        cpu=cpu,
    )
    return Step(latency, depth, judge(rate, result, depth), pool.body_size, rewrites)


def _attribute(cpu: CpuUse, *, wrk: float, redis_forks: float) -> CpuUse:
    """``cpu`` with wrk's time apart from this process's (both were counted as ``bench``),
    and Redis's AOF rewrite children counted as Redis (they were among ``others``)."""
    by = dict(cpu.by)
    by[SELF] = max(0.0, by.get(SELF, 0.0) - wrk)
    by["wrk"] = wrk
    if "redis" in by:
        by["redis"] += redis_forks
        by["others"] = max(0.0, by["others"] - redis_forks)
    order = ("receiver", "workers", "redis", "wrk", SELF, "others")
    return CpuUse(cpu.seconds, {name: by[name] for name in order if name in by})
