"""Highest rate one receiver and two worker processes hold, and the lag at 50 %/90 % of it.

The pipeline is the real one, started once for the whole run: a private redis-server
(appendfsync everysec), one ``hookline serve`` and one ``hookline work --processes 2``,
whose handler records when it starts (one RPUSH per event, so the capacity found is
that of a handler doing one Redis round trip). wrk posts pre-signed ~1.5 KB Stripe
events, each id distinct, with ``worker_load.lua``: request *k* is due at *k / rate*
seconds, open loop (see :mod:`bench.worker_latency`).

A *step* runs one rate for ``--step`` seconds (8) while the queue is sampled every
0.1 s: the jobs waiting in ``rq:queue:hookline`` plus those claimed by a worker and not
yet finished (its ``:jobs`` list), in one round trip. The step counts as **held** when
  - the backlog does not grow: its floor, the shallowest it got (in events: jobs
    times the step's events per job), rises from the step's second quarter to its
    last by at most 1 % of the rate per second (5 events/s at least); and over the
    last quarter it averages under one second of arrivals. Near capacity the depth
    comes in bursts of a second or so that drain again, which would tilt a fitted
    slope either way; only a pipeline falling behind for good lifts the floor;
  - the receiver keeps up: at least 99 % of the requests answered 2xx, and at least
    99.5 % of the offered rate answered over the step (else wrk's schedule fell behind).
Requests sent over 5 ms after their slot are reported, not judged: with 64 connections
a request is late whenever answers take over 64 / rate seconds for a moment, which
bursts of slow answers on a busy two-CPU machine do long before anything falls behind.
After each step the benchmark waits until every accepted event has been handled and
the queue is empty, then deletes the events' dedupe and done markers and rewrites
Redis's append-only file, so that every step starts from the same Redis (see
:mod:`bench.load_redis`; an AOF rewrite the step's writes set off is part of it).

The search starts from a rough estimate, ``--start`` events/s (3000). While no rate
has been refused, the next step goes to the capacity projected from the held step's
CPU use (the machine's CPUs less what other processes took, the receiver's one, the
workers' one each; the per-event cost falls as the rate rises, so this is low), but
at least 1.25 and at most 2 times the rate. While none has been held, a refused step
goes down to 98 % of the events/s its workers handled, 0.5 to 0.9 times the rate.
Once a held rate and a refused one bracket the capacity, the next step is at 98 % of
what the last refused step's workers handled (the pipeline ran flat out: a direct
measure of its capacity) when that falls inside the bracket, else at the bracket's
middle, until the two are within ``--precision`` (5 %). Then the held rate runs once
more, as near capacity a step can pass by luck: a rate refused once counts as
refused, and the search goes on below it. It stops there, or when ``--max-steps``
(12) have run (the rate is then reported as unconfirmed). Other processes can only
slow the pipeline down, so a step refused while they kept over 0.2 CPU busy is run
again, once, and only the rerun counts.

The highest rate held is reported; then the pipeline runs at 50 % and 90 % of it for
``--duration`` seconds (10) each, and the benchmark reports the lag from the receiver's
acceptance of an event to its handler's start (p50/p99 of every event), and the
receiver's p50/p99 as wrk saw them (request sent to 2xx received).

For every step the CPU time of each process group is recorded (receiver, worker
processes with their supervisor, Redis, wrk, this benchmark, and every other process
of the machine); a run during which other processes kept more than 0.2 CPU busy is
flagged, as its figures are then skewed. The defaults take one to two and a half
minutes (most of it with the machine busy: the steps near capacity and their reruns).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import BenchError
from bench.load_report import Results, table
from bench.load_search import round_rate, search
from bench.load_step import WORKER_PROCESSES, Pipeline, Step, run_step
from bench.servers import Server
from bench.worker import RESULTS_DIR, ROOT, write_config
from bench.worker_handlers import LATENCY_SOURCE
from bench.worker_latency import CONNECTIONS, WARMUP_RATE, WARMUP_SECONDS, stop
from bench.wrk import find_wrk
from hookline.config.settings import CONFIG_ENV, REDIS_URL_ENV
from hookline.redis import keys
from hookline.redis.embedded import EmbeddedRedis, free_port

#: Seconds the worker processes get to register.
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    start: float
    step: float
    duration: float
    shares: tuple[float, ...]
    max_steps: int
    precision: float
    json: bool
    save: bool


def parse_options(argv: Sequence[str]) -> Options:
    """Parse ``argv`` (the arguments after ``load``)."""
    parser = argparse.ArgumentParser(
        prog="./run bench load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--start", type=float, default=3000.0, help="first rate, events/s (3000)")
    parser.add_argument("--step", type=float, default=8.0, help="seconds per search step (8)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of each run at a share (10)"
    )
    parser.add_argument(
        "--shares", default="0.5,0.9", help="shares of the rate found to measure lag at (0.5,0.9)"
    )
    parser.add_argument("--max-steps", type=int, default=12, help="most search steps (12)")
    parser.add_argument(
        "--precision", type=float, default=0.05, help="stop when held/refused are this close (0.05)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS_DIR}/")
    args = parser.parse_args(argv)
    try:
        shares = tuple(float(x) for x in args.shares.split(",") if x.strip())
    except ValueError:
        parser.error(f"--shares: not a list of numbers: {args.shares!r}")
    if min(args.start, args.precision, *shares, 1.0) <= 0 or args.max_steps < 1:
        parser.error("--start, --precision, --shares and --max-steps must be positive")
    if args.step < 2 or args.duration < 2:
        parser.error("--step and --duration must be at least 2 seconds")
    return Options(
        start=args.start,
        step=args.step,
        duration=args.duration,
        shares=shares,
        max_steps=args.max_steps,
        precision=args.precision,
        json=args.json,
        save=not args.no_save,
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _env(redis_url: str) -> dict[str, str]:
    """The environment of the pipeline's processes: no outside configuration leaks in."""
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    env[REDIS_URL_ENV] = redis_url  # the latency handler records there
    return env


@contextlib.contextmanager
def worker_fleet(
    config: Path, client: redis.Redis, log: Path, env: Mapping[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """``hookline work --processes 2``, once every worker process has registered.

    Raises:
        BenchError: when it exits, or its workers do not register in time.
    """
    argv = [sys.executable, "-m", "hookline", "work", "--config", str(config)]
    argv += ["--processes", str(WORKER_PROCESSES)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while int(client.scard(keys.workers())) < WORKER_PROCESSES:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise BenchError(f"{' '.join(argv)}: its workers did not start:\n{tail}")
            time.sleep(0.1)
        yield proc
    finally:
        stop(proc)
    if proc.returncode is not None and proc.returncode > 0:
        raise BenchError(f"hookline work exited with status {proc.returncode}; see {log}")


def _settings(opts: Options) -> dict[str, Any]:
    return {
        "start": opts.start,
        "step_s": opts.step,
        "duration_s": opts.duration,
        "shares": list(opts.shares),
        "max_steps": opts.max_steps,
        "precision": opts.precision,
        "worker_processes": WORKER_PROCESSES,
        "connections": CONNECTIONS,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _at_shares(pipeline: Pipeline, opts: Options, held: float) -> list[tuple[float, Step]]:
    """A run at each of ``opts.shares`` of the rate ``held``."""
    runs: list[tuple[float, Step]] = []
    for share in opts.shares:
        rate = round_rate(share * held)
        _progress(f"{share:.0%} of {held:,.0f}: {rate:,.0f} events/s for {opts.duration:g} s")
        runs.append((share, run_step(pipeline, rate, opts.duration, f"p{len(runs) + 1}")))
    return runs


def run(opts: Options, work: Path) -> Results:
    """Start the pipeline in ``work``, search, then measure at the shares of the rate found."""
    settings = _settings(opts)
    wrk = find_wrk()
    with EmbeddedRedis(work / "redis", appendfsync="everysec") as server:
        assert server.process is not None  # started by the with statement
        client = redis.Redis.from_url(server.url)
        port = free_port()
        config = write_config(work, server.url, port)
        env = _env(server.url)
        serve = [sys.executable, "-m", "hookline", "serve", "--config", str(config)]
        try:
            with (
                Server(serve, port, work / "serve.log", env) as receiver,
                worker_fleet(config, client, work / "work.log", env) as fleet,
            ):
                url = f"http://127.0.0.1:{port}/hooks/{LATENCY_SOURCE}"
                pipeline = Pipeline(
                    client, wrk, url, receiver.pid, fleet.pid, server.process.pid, work
                )
                warm = run_step(pipeline, WARMUP_RATE, WARMUP_SECONDS, "w")
                settings["body_bytes"] = warm.body_bytes
                tags = itertools.count(1)
                found = search(
                    lambda rate: run_step(pipeline, rate, opts.step, f"s{next(tags)}"),
                    start=opts.start,
                    precision=opts.precision,
                    max_steps=opts.max_steps,
                    cpus=os.cpu_count() or 1,
                )
                held = found.bracket.held
                shares = [] if held is None else _at_shares(pipeline, opts, held)
        finally:
            client.close()
    return Results(settings, found, tuple(shares))


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; 0 when a rate was held, else 1."""
    opts = parse_options(argv)
    with tempfile.TemporaryDirectory(prefix="hookline-bench-load-") as tmp:
        results = run(opts, Path(tmp))
    document = results.as_json()
    print(json.dumps(document, indent=2) if opts.json else table(results))
    if opts.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        saved = RESULTS_DIR / f"load-{stamp}.json"
        saved.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        _progress(f"saved {saved}")
    return 0 if results.search.bracket.held is not None else 1
