"""The peer benchmark's run: set up Redis and the configurations, calibrate, measure rounds.

A round measures every (system, handler) pair once, kind after kind, so that the
systems compared in a ratio ran seconds apart; figures are medians over the rounds.
Before the rounds, a short calibration run of each pair (also its warm-up: imports,
caches) gives the rate from which each measurement is sized to last ``--seconds``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.peers.measure import Job, Run, measure
from bench.peers.peerjobs.common import COUNTER_KEY, QUEUE
from bench.peers.peerjobs.hookline_jobs import ASYNC_SOURCE, INCR_SOURCE, SLEEP_SOURCE
from bench.peers.systems import (
    HOOKLINE_CONCURRENCY,
    KINDS,
    ROOT,
    WAITS,
    Context,
    System,
    systems,
    worker_env,
)
from bench.pool import SECRET, write_pool
from bench.receiver import progress, revision
from bench.worker import SignedEvent, signed_events
from hookline.config.settings import CONFIG_ENV, load_settings
from hookline.errors import ConfigError
from hookline.redis.embedded import EmbeddedRedis

#: Seconds of jobs a calibration run lasts (it stops then, whatever is left in its queue).
CALIBRATE_S = 1.5
#: Jobs enqueued for a calibration run, by kind: more than any system here does in
#: :data:`CALIBRATE_S` (a faster one ends early, its rate measured all the same).
CALIBRATE_EVENTS = {"a": 6000, "b-sync": 1500, "b-async": 4000}
#: Fewest events in any run.
MIN_EVENTS = 50
#: Events enqueued beyond the fastest rate seen times the seconds asked: a round on a
#: quieter machine than any before still lasts about as long as asked.
MARGIN = 1.2
#: The payload's size in bytes (a Stripe ``invoice.paid`` event, as in the other benchmarks).
BODY_BYTES = 1400
#: Redis without automatic AOF rewrites: the fills write hundreds of MB in a run.
REDIS_EXTRA = ("--auto-aof-rewrite-percentage", "0")


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    rounds: int
    seconds: float
    batch: int
    systems: tuple[str, ...]
    kinds: tuple[str, ...]
    events: int | None
    lag_seconds: float
    lag_share: float
    json: bool
    save: bool


def parse_options(argv: Sequence[str], doc: str) -> Options:
    """Parse ``argv`` (the arguments after ``peers``); ``doc`` is the benchmark's description."""
    parser = argparse.ArgumentParser(
        prog="./run bench peers", description=doc, formatter_class=argparse.RawTextHelpFormatter
    )
    names = [s.name for s in systems()]
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each pair (3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each lasts at least (5)")
    parser.add_argument("--batch", type=int, default=16, help="hookline events per job (16)")
    parser.add_argument(
        "--systems", default=",".join(names), help=f"comma-separated subset of: {', '.join(names)}"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="subset of a, b-sync, b-async")
    parser.add_argument(
        "--events", type=int, help="every run this many events, no calibration (a quick check)"
    )
    parser.add_argument("--lag-seconds", type=float, default=10.0, help="lag run, seconds (10)")
    parser.add_argument(
        "--lag-share", type=float, default=0.5, help="lag run at this share of the best (0.5)"
    )
    parser.add_argument("--no-lag", action="store_true", help="skip the end-to-end lag run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    chosen = tuple(n.strip() for n in args.systems.split(",") if n.strip())
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if sorted(set(chosen) - set(names)) or not chosen:
        parser.error(f"--systems: choose among {', '.join(names)}")
    if set(kinds) - set(KINDS) or not kinds:
        parser.error("--kinds: choose among a, b-sync, b-async")
    if args.rounds < 1 or args.seconds <= 0 or args.batch < 1 or (args.events or 1) < 1:
        parser.error("--rounds, --seconds, --batch and --events must be positive")
    return Options(
        rounds=args.rounds,
        seconds=args.seconds,
        batch=args.batch,
        systems=chosen,
        kinds=kinds,
        events=args.events,
        lag_seconds=0.0 if args.no_lag else args.lag_seconds,
        lag_share=args.lag_share,
        json=args.json,
        save=not args.no_save,
    )


def write_hookline_config(path: Path, redis_url: str, concurrency: int) -> int | None:
    """hookline's configuration for the benchmark; returns the concurrency it could set.

    ``workers.concurrency`` is written when this hookline's configuration accepts it (its
    own validation says so); otherwise the file goes without it and ``None`` is returned.
    """
    sources = "".join(
        f'[sources.{name}]\nscheme = "stripe"\nsecrets = ["{SECRET}"]\n\n'
        for name in (INCR_SOURCE, SLEEP_SOURCE, ASYNC_SOURCE)
    )
    workers = '[workers]\nhandlers = ["peerjobs.hookline_jobs"]\n'
    base = f'[redis]\nurl = "{redis_url}"\n\n{sources}{workers}'
    path.write_text(f"{base}concurrency = {concurrency}\n", encoding="utf-8")
    try:
        load_settings(path, env={})
    except ConfigError:
        path.write_text(base, encoding="utf-8")
        load_settings(path, env={})  # anything else wrong with it is the benchmark's bug
        return None
    return concurrency


@dataclass
class Bench:
    """One run's shared state: Redis, the configurations, the events, the sizes learnt."""

    client: redis.Redis
    url: str
    redis_pid: int
    work: Path
    ctx: Context
    #: The concurrency each kind's hookline configuration sets (``None``: not supported).
    concurrency: dict[str, int | None]
    env: dict[str, str]
    events: list[SignedEvent] = field(default_factory=list)
    #: Events/s learnt so far per (system, kind), to size the next run.
    rates: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def pool(self, count: int) -> Sequence[SignedEvent]:
        """``count`` distinct events (ids unique within a run; Redis is emptied between runs)."""
        if count > len(self.events):
            size = max(count, 2 * len(self.events))
            written = write_pool(
                self.work / f"pool-{size}", tag="p", threads=1, per_thread=size,
                body_size=BODY_BYTES,
            )  # fmt: skip
            self.events = signed_events(written)
        return self.events[:count]

    def size(self, system: System, kind: str, seconds: float) -> int:
        """Events for a run of at least ``seconds`` unless it beats every rate seen so far.

        On a shared machine a pair's rate moves from round to round with the load, so the
        size follows its fastest run, not its median.
        """
        known = self.rates.get((system.name, kind))
        if not known:
            return CALIBRATE_EVENTS[kind]
        return max(MIN_EVENTS, math.ceil(max(known) * seconds * MARGIN))

    def run(
        self, system: System, kind: str, events: int, tag: str, stop_after: float | None = None
    ) -> Run:
        """Empty Redis, enqueue ``events`` jobs of ``kind`` for ``system``, and measure it."""
        self.client.flushall()
        chosen = self.pool(events)
        started = datetime.now(UTC)
        system.enqueue(self.ctx, kind, chosen)
        fill = (datetime.now(UTC) - started).total_seconds()
        argv = system.argv(self.ctx, kind)
        slug = f"{system.name}-{kind}-{tag}".replace(" ", "_").replace("(", "").replace(")", "")
        result = measure(
            Job(system.name, kind, argv, events, WAITS[kind], fill, stop_after),
            self.client,
            COUNTER_KEY,
            redis_pid=self.redis_pid,
            log=self.work / f"{slug}.log",
            cwd=ROOT,
            env=worker_env(self.env, system, self.url, ROOT),
        )
        self.rates.setdefault((system.name, kind), []).append(result.events_per_s)
        return result


def pairs(opts: Options) -> list[tuple[System, str]]:
    """(system, kind) in the order a round measures them: kind after kind."""
    chosen = [s for s in systems() if s.name in opts.systems]
    for system in chosen:
        system.prepare()
    return [(s, k) for k in opts.kinds for s in chosen if k in s.kinds]


def calibrate(bench: Bench, todo: Sequence[tuple[System, str]]) -> list[Run]:
    """A run of :data:`CALIBRATE_S` seconds of each pair, to size its measured runs."""
    found = []
    for system, kind in todo:
        result = bench.run(system, kind, CALIBRATE_EVENTS[kind], "cal", CALIBRATE_S)
        found.append(result)
        progress(f"  calibrate {system.name} ({kind}): {result.events_per_s:,.0f} events/s")
    return found


def measure_rounds(
    bench: Bench, opts: Options, todo: Sequence[tuple[System, str]]
) -> list[list[Run]]:
    """Every pair, round after round; each run sized to last ``opts.seconds``."""
    found: list[list[Run]] = []
    for number in range(1, opts.rounds + 1):
        progress(f"round {number} of {opts.rounds}")
        found.append([])
        for system, kind in todo:
            events = opts.events or bench.size(system, kind, opts.seconds)
            result = bench.run(system, kind, events, f"r{number}")
            found[-1].append(result)
            progress(
                f"  {system.name} ({kind}): {result.events:,} events, "
                f"{result.events_per_s:,.0f} events/s, {result.busy:.1f} s"
            )
    return found


def settings(opts: Options, concurrency: dict[str, int | None]) -> dict[str, Any]:
    """What the report says the run was."""
    return {
        "rounds": opts.rounds,
        "seconds_per_run": opts.seconds,
        "hookline_batch": opts.batch,
        "hookline_concurrency": concurrency,
        "body_bytes": BODY_BYTES,
        "queue": QUEUE,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "revision": revision(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def open_bench(opts: Options, work: Path, server: EmbeddedRedis) -> Bench:
    """The shared state of a run on ``server``, with hookline's configurations written."""
    assert server.process is not None  # started by the caller's with statement
    configs, concurrency = {}, {}
    for kind in KINDS:
        configs[kind] = work / f"hookline-{kind}.toml"
        concurrency[kind] = write_hookline_config(
            configs[kind], server.url, HOOKLINE_CONCURRENCY[kind]
        )
    client = redis.Redis.from_url(server.url)
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    ctx = Context(client, server.url, configs, opts.batch, work)
    return Bench(client, server.url, server.process.pid, work, ctx, concurrency, env)


def start_redis(work: Path) -> EmbeddedRedis:
    """The benchmark's private redis-server (a free port; appendfsync everysec)."""
    return EmbeddedRedis(work / "redis", appendfsync="everysec", extra=REDIS_EXTRA)


def temporary_work() -> tempfile.TemporaryDirectory[str]:
    """The run's scratch directory (Redis's data, configurations, worker logs)."""
    return tempfile.TemporaryDirectory(prefix="hookline-bench-peers-")
