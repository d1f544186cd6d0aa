"""Requests/s of `hookline serve` next to a bare and a naive aiohttp receiver, under wrk.

Same load for all three (wrk, same connections, threads and duration, after a warm-up),
same ~1.5 KB Stripe-signed events with distinct ids, one private redis-server
(appendfsync everysec) emptied between runs, each receiver in a process of its own:

  (a) bare aiohttp: read the body, answer 202;
  (b) naive: verify the signature, ``rq.Queue.enqueue`` in a thread, sync Redis client;
  (c) ``hookline serve``, the real command, with a config file naming that Redis;
  (d) ``hookline serve --processes 2``: two receiver processes on the port (``d/c``: what
      a second process adds; on a 2-core machine shared with Redis and wrk, not 2).

After every run of (b) and (c) it checks that Redis holds every event answered with a 2xx.

Rounds: on a shared machine throughput drifts by tens of percent over tens of seconds,
so (a) measured, then (c) a minute later, compares the drift as much as the receivers.
The run therefore alternates: round 1 measures a, b, c, round 2 measures a, b, c again,
and so on (--rounds, 3). Each ratio (c/a, c/b) is taken within a round, from runs
seconds apart, and the run reports the median of the per-round ratios, with each of
them to show the spread; the table shows each target's medians over the rounds. Every
run starts a fresh server process and replays the same pre-signed pool (its ids are
distinct within a run, and Redis is emptied before each), so rounds need no larger pool.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import BenchError, cpu
from bench.apps import NAIVE_QUEUE
from bench.pool import SECRET, Pool, pool_size, write_pool
from bench.report import Measured, Target, as_json, table
from bench.servers import Server
from bench.stored import Stored, hookline_events, rq_jobs
from bench.wrk import find_wrk, run_wrk
from hookline.config.settings import CONFIG_ENV, DEFAULT_QUEUE, REDIS_URL_ENV
from hookline.redis.embedded import EmbeddedRedis, free_port

TARGETS = (
    Target("a", "bare", "bare aiohttp (read body, 202)"),
    Target("b", "naive", "naive: verify, rq enqueue in a thread"),
    Target("c", "hookline", "hookline serve"),
    Target("d", "hookline2", "hookline serve --processes 2"),
)
#: Where results are saved (git-ignored).
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Seconds left after the warm-up for requests still in flight to finish.
SETTLE = 1.0
#: Replay tolerance given to the benchmark's source, so that pre-signed events stay valid:
#: the pool is signed once, then replayed round after round, for as long as the run lasts.
TOLERANCE_S = 86_400


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    rounds: int
    duration: int
    warmup: int
    connections: int
    threads: int
    max_rate: int
    targets: tuple[str, ...]
    log_level: str
    json: bool
    save: bool
    appendfsync: str
    wait_replicas: int


def add_load_arguments(parser: argparse.ArgumentParser, measured: str) -> None:
    """Add the options of the load: rounds, wrk's duration, warm-up, connections, threads.

    ``measured`` names what each round measures once (``target``, ``setting``).
    """
    parser.add_argument(
        "--rounds", type=int, default=3, help=f"times each {measured} is measured, in turn (3)"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds measured (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up (2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--max-rate",
        type=int,
        default=40_000,
        help="requests/s the pool of signed events is sized for (40000)",
    )


def check_load_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error unless the options of :func:`add_load_arguments` make sense."""
    counts = (args.rounds, args.duration, args.connections, args.threads, args.max_rate)
    if min(counts) < 1 or args.warmup < 0:
        parser.error("rounds, durations, connections, threads and --max-rate must be positive")


def parse_options(argv: Sequence[str]) -> Options:
    """Parse ``argv`` (the arguments after ``receiver``)."""
    parser = argparse.ArgumentParser(
        prog="./run bench receiver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(parser, "target")
    parser.add_argument(
        "--targets",
        default="bare,naive,hookline",
        help="comma-separated subset of bare, naive, hookline, hookline2 (bare,naive,hookline)",
    )
    parser.add_argument("--log-level", default="info", help="hookline serve's (info)")
    parser.add_argument(
        "--appendfsync",
        choices=("everysec", "always"),
        default="everysec",
        help="the Redis AOF fsync policy (everysec)",
    )
    parser.add_argument(
        "--wait-replicas",
        type=int,
        default=0,
        help="start this many replicas and have hookline wait for them (server.wait_replicas)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS_DIR}/")
    args = parser.parse_args(argv)
    names = tuple(n.strip() for n in args.targets.split(",") if n.strip())
    unknown = sorted(set(names) - {t.name for t in TARGETS})
    if unknown or not names:
        parser.error(f"--targets: unknown {', '.join(unknown) or '(none given)'}")
    check_load_arguments(parser, args)
    return load_options(
        args, names, appendfsync=args.appendfsync, wait_replicas=max(0, args.wait_replicas)
    )


def load_options(
    args: argparse.Namespace, targets: tuple[str, ...], *, appendfsync: str, wait_replicas: int
) -> Options:
    """:class:`Options` from arguments added by :func:`add_load_arguments` and the output
    flags (``--log-level``, ``--json``, ``--no-save``)."""
    return Options(
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        threads=args.threads,
        max_rate=args.max_rate,
        targets=targets,
        log_level=args.log_level,
        json=args.json,
        save=not args.no_save,
        appendfsync=appendfsync,
        wait_replicas=wait_replicas,
    )


def progress(message: str) -> None:
    """Tell the person waiting what the run is doing (on stderr, so stdout stays the result)."""
    print(message, file=sys.stderr, flush=True)


def _hookline_config(directory: Path, redis_url: str, port: int, wait_replicas: int = 0) -> Path:
    """A configuration with one Stripe source for ``hookline serve``."""
    path = directory / "hookline.toml"
    path.write_text(
        f"""[redis]
url = "{redis_url}"

[server]
host = "127.0.0.1"
port = {port}
wait_replicas = {wait_replicas}

[sources.stripe]
scheme = "stripe"
secrets = ["{SECRET}"]
tolerance = {TOLERANCE_S}
# No worker drains the queue during the benchmark: keep backpressure out of the way.
max_queue_depth = 1000000000
""",
        encoding="utf-8",
    )
    return path


def _command(
    target: Target, port: int, redis_url: str, work: Path, log_level: str, wait_replicas: int = 0
) -> list[str]:
    """The command line that serves ``target`` on ``port``."""
    python = sys.executable
    if target.name == "bare":
        return [python, "-m", "bench.serve", "bare", "--port", str(port)]
    if target.name == "naive":
        return [
            *(python, "-m", "bench.serve", "naive", "--port", str(port)),
            *("--redis-url", redis_url, "--secret", SECRET, "--tolerance", str(TOLERANCE_S)),
        ]
    config = _hookline_config(work, redis_url, port, wait_replicas)
    processes = ["--processes", "2"] if target.name == "hookline2" else []
    return [
        *(python, "-m", "hookline", "serve", "--config", str(config), "--log-level", log_level),
        *processes,
    ]


@dataclass(frozen=True, slots=True)
class Bench:
    """What a run measures against: its options, tools, request pools and Redis."""

    options: Options
    wrk: str
    work: Path
    warmup_pool: Pool
    pool: Pool
    redis_url: str
    #: The Redis processes whose CPU is reported as Redis's.
    redis_pids: tuple[int, ...]
    client: redis.Redis


def _stored(target: Target, client: redis.Redis) -> Stored | None:
    if target.name in ("hookline", "hookline2"):
        return hookline_events(client, DEFAULT_QUEUE)
    if target.name == "naive":
        return rq_jobs(client, NAIVE_QUEUE)
    return None


def measure(target: Target, bench: Bench) -> Measured:
    """Serve ``target``, warm it up, empty Redis, measure, stop it, count what it stored.

    Each wrk run reads the pool's files from their start: every run sends the same ids,
    distinct within the run, into a Redis emptied just before (and a fresh server).
    """
    opts = bench.options
    port = free_port()
    argv = _command(target, port, bench.redis_url, bench.work, opts.log_level, opts.wait_replicas)
    env = {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, REDIS_URL_ENV)}
    url = f"http://127.0.0.1:{port}/hooks/stripe"
    bench.client.flushall()
    progress(f"  ({target.key}) {target.label}: port {port}")
    with Server(argv, port, bench.work / f"{target.name}.log", env) as server:
        if opts.warmup:
            run_wrk(
                bench.wrk,
                url,
                bench.warmup_pool.directory,
                duration=opts.warmup,
                connections=opts.connections,
                threads=opts.threads,
            )
            time.sleep(SETTLE)
        bench.client.flushall()
        meter = cpu.start(server.pid, *bench.redis_pids)
        began = time.monotonic()
        result = run_wrk(
            bench.wrk,
            url,
            bench.pool.directory,
            duration=opts.duration,
            connections=opts.connections,
            threads=opts.threads,
        )
        share = meter.stop(time.monotonic() - began, result.requests) if meter else None
    # The server has exited: whatever it was still committing is in Redis now.
    measured = Measured(target, result, _stored(target, bench.client), share)
    progress(
        f"      {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
    )
    return measured


def _rounds(targets: Sequence[Target], bench: Bench) -> list[list[Measured]]:
    """Measure every target in turn, round after round."""
    rounds = []
    for n in range(1, bench.options.rounds + 1):
        progress(f"round {n} of {bench.options.rounds}")
        rounds.append([measure(target, bench) for target in targets])
    return rounds


def revision() -> str | None:
    """The commit measured, ``-dirty`` when the work tree has changes, if git can tell."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def run_settings(opts: Options, pool: Pool) -> dict[str, Any]:
    """What a run was measured under, for its report: revision, load, pool, machine."""
    return {
        "revision": revision(),
        "rounds": opts.rounds,
        "duration": opts.duration,
        "warmup": opts.warmup,
        "connections": opts.connections,
        "threads": opts.threads,
        "body_bytes": pool.body_size,
        "pool": pool.size,
        "hookline_log_level": opts.log_level,
        "appendfsync": opts.appendfsync,
        "wait_replicas": opts.wait_replicas,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _wait_for_replicas(url: str, count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` replicas are attached and in sync."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while int(client.info("replication").get("connected_slaves", 0)) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"{count} replica(s) did not attach in {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        client.close()


def write_pools(work: Path, opts: Options) -> tuple[Pool, Pool]:
    """Sign the warm-up's events and the measurement's, enough for ``opts.max_rate``."""
    per_thread = pool_size(opts.duration, opts.max_rate, opts.threads)
    progress(f"signing {per_thread * opts.threads:,} events for up to {opts.max_rate:,} req/s")
    warm = pool_size(opts.warmup, opts.max_rate, opts.threads) if opts.warmup else 1
    warmup_pool = write_pool(work / "warmup", tag="w", threads=opts.threads, per_thread=warm)
    pool = write_pool(work / "pool", tag="m", threads=opts.threads, per_thread=per_thread)
    return warmup_pool, pool


#: No automatic AOF rewrite. Nothing drains the queue during a benchmark, so Redis grows by
#: hundreds of MB a run, and each automatic rewrite compresses all of it in a forked child
#: (seconds of CPU on a 2-core machine, taken from the receiver under test while the bare
#: app, which writes nothing, never pays it). In service, workers keep the queue short and
#: rewrites cheap. Every write still goes to the append-only file, fsynced as configured.
NO_AOF_REWRITE = ("--auto-aof-rewrite-percentage", "0")


def start_redis(
    stack: contextlib.ExitStack, directory: Path, appendfsync: str, replicas: int = 0
) -> tuple[EmbeddedRedis, list[EmbeddedRedis]]:
    """Start a redis-server in ``directory`` and ``replicas`` replicas of it beside it.

    They stop when ``stack`` closes. Returns once every replica is attached and in sync.
    """
    primary = stack.enter_context(
        EmbeddedRedis(
            directory,
            appendfsync=appendfsync,
            extra=("--repl-diskless-sync-delay", "0", *NO_AOF_REWRITE),
        )
    )
    copies = [
        stack.enter_context(
            EmbeddedRedis(
                directory.parent / f"replica-{n}",
                appendfsync=appendfsync,
                extra=("--replicaof", "127.0.0.1", str(primary.port), *NO_AOF_REWRITE),
            )
        )
        for n in range(replicas)
    ]
    _wait_for_replicas(primary.url, replicas)
    return primary, copies


def save_results(document: dict[str, Any], benchmark: str) -> None:
    """Write ``document`` to :data:`RESULTS_DIR`, named after ``benchmark`` and the time."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    saved = RESULTS_DIR / f"{benchmark}-{stamp}.json"
    saved.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    progress(f"saved {saved}")


def main(argv: Sequence[str]) -> int:
    """Run the benchmark: 0 when every run's pool sufficed and its stored count checks out."""
    opts = parse_options(argv)
    wrk = find_wrk()
    targets = [t for t in TARGETS if t.name in opts.targets]
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        work = Path(tmp)
        warmup_pool, pool = write_pools(work, opts)
        with contextlib.ExitStack() as stack:
            server, _ = start_redis(stack, work / "redis", opts.appendfsync, opts.wait_replicas)
            assert server.process is not None  # started by entering
            client = redis.Redis.from_url(server.url)
            # Only the primary's CPU, as this benchmark has always reported it: a replica's
            # falls under "other processes".
            bench = Bench(
                opts, wrk, work, warmup_pool, pool, server.url, (server.process.pid,), client
            )
            try:
                rounds = _rounds(targets, bench)
            finally:
                client.close()
    settings = run_settings(opts, pool)
    document = as_json(settings, rounds)
    print(json.dumps(document, indent=2) if opts.json else table(settings, rounds))
    if opts.save:
        save_results(document, "receiver")
    runs = [m for measured in rounds for m in measured]
    valid = all(m.consistent is not False and not m.wrk.exhausted for m in runs)
    return 0 if valid else 1
