"""End-to-end latency: `hookline serve` and one `hookline work` process under a steady load.

wrk posts pre-signed Stripe events (see :mod:`bench.pool`) at a fixed rate with
``worker_load.lua``: request *k* is due at ``k / rate`` seconds whatever became of
the earlier ones (open loop while a connection is free), so a slow pipeline shows up
as latency instead of as less load. wrk, in C, leaves the CPUs to the pipeline; a
Python client at these rates takes a good part of a core from it.

The handler records ``time.time()`` on entry next to the envelope's ``received_at``,
which the receiver sets once it has read the body, before verifying and committing
it: the difference is the time from the receiver's acceptance to the handler's start,
an upper bound on the time from its 2xx (sent after the commit) to the handler's start.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis

from bench import BenchError
from bench.pool import Pool
from bench.servers import Server
from bench.worker_cpu import CpuUse, process_tree, read_cpu
from bench.worker_handlers import LATENCY_KEY, LATENCY_SOURCE
from bench.wrk import RESULT_MARK, WrkResult
from hookline.redis import keys

#: The wrk script that paces the requests.
SCRIPT = Path(__file__).with_name("worker_load.lua")
#: wrk connections: the most requests in flight before the load stops being open loop.
CONNECTIONS = 64
#: Seconds and requests/s of the warm-up (connections, imports, first calls), not measured.
WARMUP_SECONDS = 1.0
WARMUP_RATE = 100.0
#: Longest wait for the worker to handle what was accepted, after the load stops.
CATCH_UP_TIMEOUT = 60.0
#: Seconds between two readings of the queue's depth while the load runs.
DEPTH_EVERY = 0.05


@dataclass(frozen=True, slots=True)
class Percentiles:
    """p50, p99 and max of a sample, in milliseconds."""

    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Percentiles:
        """Percentiles of ``seconds`` (at least two values)."""
        cuts = statistics.quantiles(seconds, n=100, method="inclusive")
        return cls(cuts[49] * 1000, cuts[98] * 1000, max(seconds) * 1000)

    def as_dict(self) -> dict[str, float]:
        """JSON-ready, rounded to microseconds."""
        return {
            "p50": round(self.p50_ms, 3),
            "p99": round(self.p99_ms, 3),
            "max": round(self.max_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class Latency:
    """The end-to-end run: the load, what the worker did, and the latencies."""

    rate: float
    wrk: WrkResult
    #: Requests sent more than 5 ms after their slot.
    late: int
    handled: int
    jobs: int
    max_depth: int
    catch_up_s: float
    #: Handler start minus the envelope's ``received_at``.
    to_handler: Percentiles
    #: CPU time while the load ran: ``receiver``, ``worker``, ``redis``, ``bench`` (wrk
    #: and this process), ``others`` (the rest of the machine).
    cpu: CpuUse

    def cpu_us_per_event(self, name: str) -> float:
        """CPU microseconds ``name`` spent per event accepted while the load ran."""
        accepted = self.wrk.answered_2xx
        return self.cpu.by.get(name, 0.0) / accepted * 1e6 if accepted else 0.0

    @property
    def events_per_job(self) -> float:
        """Events per job the receiver's group commit made at this rate."""
        return self.handled / self.jobs if self.jobs else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        w = self.wrk
        return {
            "target_rate": round(self.rate, 1),
            "achieved_rate": round(w.rps, 1),
            "duration_s": round(w.duration_s, 3),
            "connections": CONNECTIONS,
            "answered_2xx": w.answered_2xx,
            "non_2xx": w.non_2xx,
            "socket_errors": w.socket_errors + w.timeouts,
            "late_requests": self.late,
            "handled": self.handled,
            "jobs_written": self.jobs,
            "events_per_job": round(self.events_per_job, 2),
            "max_queue_depth_jobs": self.max_depth,
            "catch_up_s": round(self.catch_up_s, 3),
            "received_to_handler_ms": self.to_handler.as_dict(),
            "client_request_to_2xx_ms": {"p50": w.p50_ms, "p99": w.p99_ms, "max": w.max_ms},
            "cpu_during_load": {
                name: {
                    "cpus_busy": round(self.cpu.load(name), 2),
                    "us_per_event": round(self.cpu_us_per_event(name), 1),
                }
                for name in self.cpu.by
            },
        }


def run_load(
    wrk: str, url: str, pool: Pool, *, rate: float, duration: float
) -> tuple[WrkResult, int]:
    """Post ``pool``'s events to ``url`` at ``rate`` per second; returns wrk's result, late."""
    argv = [wrk, "--threads=1", f"--connections={CONNECTIONS}", f"--duration={duration:g}s"]
    argv += [f"--script={SCRIPT}", url, "--", str(pool.directory), f"{rate:g}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 60:g} s") from None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            report = json.loads(line.removeprefix(RESULT_MARK))
            return WrkResult.from_report(report), int(report["late"])
    raise BenchError(f"wrk exited with status {done.returncode}:\n{done.stdout}{done.stderr}")


def _run_load_watched(
    wrk: str, url: str, pool: Pool, client: redis.Redis, queue: str, *, rate: float, duration: float
) -> tuple[WrkResult, int, int]:
    """:func:`run_load` in a thread while this one records the deepest the queue gets."""
    deepest, key = 0, keys.rq_queue(queue)
    with ThreadPoolExecutor(1) as executor:
        future = executor.submit(run_load, wrk, url, pool, rate=rate, duration=duration)
        while not future.done():
            deepest = max(deepest, int(client.llen(key)))
            time.sleep(DEPTH_EVERY)
        result, late = future.result()
    return result, late, deepest


def read_handled(client: redis.Redis) -> list[tuple[float, float]]:
    """(handler start, received_at) of every event the handler recorded."""
    found = []
    for raw in cast(list[bytes], client.lrange(LATENCY_KEY, 0, -1)):
        _event_id, started, received = raw.decode().split(" ")
        found.append((float(started), float(received)))
    return found


def wait_handled(client: redis.Redis, count: int, timeout: float) -> float:
    """Wait until the handler has recorded ``count`` events; returns how long that took."""
    start = time.monotonic()
    while int(client.llen(LATENCY_KEY)) < count:
        if time.monotonic() - start > timeout:
            raise BenchError(
                f"latency: the worker handled {client.llen(LATENCY_KEY)} of {count} "
                f"accepted events within {timeout:g} s"
            )
        time.sleep(0.01)
    return time.monotonic() - start


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop ``proc``: terminate it, and kill it if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_latency(
    *,
    wrk: str,
    config: Path,
    port: int,
    client: redis.Redis,
    redis_pid: int,
    warmup: Pool,
    pool: Pool,
    rate: float,
    duration: float,
    queue: str,
    work: Path,
    cwd: Path,
    env: Mapping[str, str],
) -> Latency:
    """Serve and work with ``config``; post ``pool`` at ``rate`` for ``duration`` seconds.

    ``warmup`` is posted first, at a low rate, and not measured.

    Raises:
        BenchError: when a process fails, or the worker does not catch up in time.
    """
    url = f"http://127.0.0.1:{port}/hooks/{LATENCY_SOURCE}"
    python = sys.executable
    serve = [python, "-m", "hookline", "serve", "--config", str(config)]
    work_argv = [python, "-m", "hookline", "work", "--config", str(config), "--processes", "1"]
    with (work / "latency-worker.log").open("wb") as out:
        worker = subprocess.Popen(
            work_argv, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        with Server(serve, port, work / "latency-serve.log", env) as server:
            warm, _ = run_load(wrk, url, warmup, rate=WARMUP_RATE, duration=WARMUP_SECONDS)
            wait_handled(client, warm.answered_2xx, 30.0)
            client.delete(LATENCY_KEY)
            client.config_resetstat()
            groups = {
                "receiver": process_tree(server.pid),
                "worker": process_tree(worker.pid),
                "redis": [redis_pid],
            }
            before = read_cpu(groups)
            result, late, deepest = _run_load_watched(
                wrk, url, pool, client, queue, rate=rate, duration=duration
            )
            cpu = CpuUse.between(before, read_cpu(groups))
            catch_up = wait_handled(client, result.answered_2xx, CATCH_UP_TIMEOUT)
            # The receiver writes each job with one HSET, inside its commit script.
            stats = client.info("commandstats")
            jobs = int(stats.get("cmdstat_hset", {}).get("calls", 0))
    finally:
        stop(worker)
    if worker.returncode is not None and worker.returncode > 0:
        raise BenchError(f"latency: the worker exited with status {worker.returncode}")
    handled = read_handled(client)
    if len(handled) < 2:
        raise BenchError("latency: too few events were handled to measure")
    return Latency(
        rate=rate,
        wrk=result,
        late=late,
        handled=len(handled),
        jobs=jobs,
        max_depth=deepest,
        catch_up_s=catch_up,
        to_handler=Percentiles.of([start - received for start, received in handled]),
        cpu=cpu,
    )
