"""Events/s of one `hookline work` process next to stock `rq worker`, and end-to-end latency.

One run, one private redis-server (appendfsync everysec), emptied between drains, the
same ~1.5 KB Stripe ``invoice.paid`` payload (a distinct id each) everywhere:

  (1) stock RQ: N jobs of one payload each, enqueued with ``rq.Queue.enqueue_many``
      (JSON serializer) to a no-op function, drained by one
      ``rq worker -w rq.worker.SimpleWorker --burst -S rq.serializers.JSONSerializer``;
  (2) hookline: N events committed with ``hookline.redis.commit.Enqueuer`` B per job (as
      the receiver's group commit makes them under load), and again one per job (the
      worst case: a receiver at low concurrency), each drained by one
      ``hookline work --burst --processes 1`` with a no-op ``@on`` handler;
      idempotency (lease, done marker) and retries are always on;
  (3) latency: ``hookline serve`` and one ``hookline work`` process, loaded by wrk at
      half of (2)'s best events/s for a fixed time, open loop; p50/p99 from the
      receiver's acceptance of an event to its handler's start.

Drains are timed from the worker's first job to its last, as seen from Redis (see
:mod:`bench.worker_drain`), so process start-up and exit count for neither side; (1)
and (2) are repeated, interleaved, and the best of each kept. The worker's and Redis's
CPU time per event are reported too: unlike events/s, they hardly change when other
processes share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench import BenchError
from bench.pool import SECRET, Pool, write_pool
from bench.worker_drain import Drain, hookline_probe, measure_drain, rq_probe
from bench.worker_handlers import LATENCY_SOURCE, NOOP_SOURCE, rq_noop
from bench.worker_latency import WARMUP_RATE, WARMUP_SECONDS, Latency, run_latency
from bench.worker_report import Results, Summary, table
from bench.wrk import find_wrk
from hookline.config.settings import CONFIG_ENV, DEFAULT_DEDUPE_WINDOW, DEFAULT_QUEUE, REDIS_URL_ENV
from hookline.envelope import Envelope
from hookline.redis import keys
from hookline.redis.commit import Enqueuer, Pending
from hookline.redis.embedded import EmbeddedRedis, free_port

#: Where results are saved (git-ignored).
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The repository: workers run from here, so that they import ``bench.worker_handlers``.
ROOT = Path(__file__).resolve().parent.parent
#: The queue stock RQ's jobs go to.
STOCK_QUEUE = "stock"
#: Replay tolerance of the latency run's source, so that pre-signed events stay valid.
TOLERANCE_S = 3600
#: Jobs enqueued per round trip when filling stock RQ's queue.
_RQ_CHUNK = 500

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    """The command line."""

    events: int
    batch: int
    repeat: int
    duration: float
    loads: tuple[float, ...]
    rate: float | None
    json: bool
    save: bool


def parse_options(argv: Sequence[str]) -> Options:
    """Parse ``argv`` (the arguments after ``worker``)."""
    parser = argparse.ArgumentParser(
        prog="./run bench worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=4000, help="events per drain (4000)")
    parser.add_argument("--batch", type=int, default=16, help="hookline events per job (16)")
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each drain, interleaved; best kept (2)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="latency run, seconds (10)")
    parser.add_argument(
        "--loads",
        default="0.5,0.25",
        help="latency runs, each at this share of hookline's best events/s (0.5,0.25)",
    )
    parser.add_argument("--rate", type=float, help="one latency run at this events/s instead")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS_DIR}/")
    args = parser.parse_args(argv)
    if args.events < 100 or min(args.batch, args.repeat) < 1 or args.duration <= 0:
        parser.error("--events must be at least 100; --batch, --repeat, --duration positive")
    try:
        loads = tuple(float(x) for x in args.loads.split(",") if x.strip())
    except ValueError:
        parser.error(f"--loads: not a list of numbers: {args.loads!r}")
    if (args.rate is not None and args.rate <= 0) or any(x <= 0 for x in loads):
        parser.error("--rate and --loads must be positive")
    return Options(
        events=args.events,
        batch=args.batch,
        repeat=args.repeat,
        duration=args.duration,
        loads=() if args.no_latency else loads,
        rate=None if args.no_latency else args.rate,
        json=args.json,
        save=not args.no_save,
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """One pre-signed Stripe request of a pool."""

    id: str
    signature: str
    body: bytes

    def headers(self) -> dict[str, str]:
        """The headers the receiver keeps from Stripe's request (names lower-cased)."""
        return {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "stripe-signature": self.signature,
        }


def signed_events(pool: Pool) -> list[SignedEvent]:
    """The requests of a one-thread pool written by :func:`bench.pool.write_pool`."""
    head = (pool.directory / "head.bin").read_bytes()
    tail = (pool.directory / "tail.bin").read_bytes()
    found = []
    with (pool.directory / "thread-1.txt").open(encoding="ascii") as lines:
        for line in lines:
            event_id, signature = line.rstrip("\n").split(" ", 1)
            found.append(SignedEvent(event_id, signature, head + event_id.encode() + tail))
    return found


def write_config(directory: Path, redis_url: str, port: int) -> Path:
    """The configuration every hookline process of the benchmark reads."""
    path = directory / "hookline.toml"
    path.write_text(
        f"""[redis]
url = "{redis_url}"

[server]
host = "127.0.0.1"
port = {port}

[sources.{NOOP_SOURCE}]
scheme = "stripe"
secrets = ["{SECRET}"]

[sources.{LATENCY_SOURCE}]
scheme = "stripe"
secrets = ["{SECRET}"]
tolerance = {TOLERANCE_S}

[workers]
handlers = ["bench.worker_handlers"]
""",
        encoding="utf-8",
    )
    return path


def enqueue_stock(client: redis.Redis, events: Sequence[SignedEvent]) -> None:
    """One stock RQ job per event: ``rq_noop(payload)``, JSON-serialised."""
    queue = Queue(STOCK_QUEUE, connection=client, serializer=JSONSerializer)
    for chunk in _chunks(events, _RQ_CHUNK):
        jobs = [Queue.prepare_data(rq_noop, args=(orjson.loads(e.body),)) for e in chunk]
        with client.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()


def enqueue_hookline(
    client: redis.Redis, events: Sequence[SignedEvent], batch: int, source: str = NOOP_SOURCE
) -> int:
    """Commit the events ``batch`` per job, as the receiver would; returns the jobs written."""
    enqueuer = Enqueuer(client)
    jobs = 0
    for chunk in _chunks(events, batch):
        enqueuer.commit([Pending(_envelope(e, source), DEFAULT_DEDUPE_WINDOW) for e in chunk])
        jobs += 1
    return jobs


def _envelope(event: SignedEvent, source: str) -> Envelope:
    """The envelope the receiver would store for ``event``, received from ``source``."""
    payload = orjson.loads(event.body)
    return Envelope(
        source=source,
        id=event.id,
        type=str(payload["type"]),
        received_at=time.time(),
        headers=event.headers(),
        body=event.body,
        queue=DEFAULT_QUEUE,
    )


def _check_stock(client: redis.Redis, expected: int) -> None:
    queue = Queue(STOCK_QUEUE, connection=client, serializer=JSONSerializer)
    finished = queue.finished_job_registry.get_job_count(cleanup=False)
    failed = queue.failed_job_registry.get_job_count(cleanup=False)
    if (finished, failed) != (expected, 0):
        raise BenchError(f"stock RQ: {finished} of {expected} jobs finished, {failed} failed")


def _check_hookline(client: redis.Redis, expected: int) -> None:
    done = sum(1 for _ in client.scan_iter(match=keys.done(NOOP_SOURCE, "*"), count=1000))
    retries = int(client.zcard(keys.retries()))
    dead = int(client.zcard(keys.dlq_index()))
    if (done, retries, dead) != (expected, 0, 0):
        raise BenchError(
            f"hookline: {done} of {expected} events done, {retries} retries, {dead} dead letters"
        )


@dataclass(frozen=True, slots=True)
class WorkerBench:
    """What every phase shares."""

    client: redis.Redis
    redis_url: str
    redis_pid: int
    config: Path
    port: int
    work: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment of the benchmark's processes: no outside configuration leaks in."""
        env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
        env[REDIS_URL_ENV] = self.redis_url  # the latency handler records there
        return env


def run_stock(bench: WorkerBench, events: Sequence[SignedEvent]) -> Drain:
    """Phase (1): stock RQ, one job per event."""
    bench.client.flushall()
    enqueue_stock(bench.client, events)
    rq = Path(sys.executable).with_name("rq")
    if not rq.exists():
        raise BenchError(f"no rq command next to {sys.executable}; install rq in this venv")
    argv = [str(rq), "worker", "-w", "rq.worker.SimpleWorker", "--burst"]
    argv += ["-S", "rq.serializers.JSONSerializer", "--url", bench.redis_url, STOCK_QUEUE]
    drain = measure_drain(
        "stock rq SimpleWorker, 1 event/job",
        argv,
        bench.client,
        rq_probe(bench.client, STOCK_QUEUE, len(events)),
        events=len(events),
        log=bench.work / "rq.log",
        cwd=ROOT,
        env=bench.env,
        redis_pid=bench.redis_pid,
    )
    _check_stock(bench.client, len(events))
    return drain


def run_hookline(bench: WorkerBench, events: Sequence[SignedEvent], batch: int) -> Drain:
    """Phase (2): hookline, ``batch`` events per job."""
    bench.client.flushall()
    jobs = enqueue_hookline(bench.client, events, batch)
    argv = [sys.executable, "-m", "hookline", "work", "--config", str(bench.config)]
    argv += ["--burst", "--processes", "1"]
    drain = measure_drain(
        f"hookline work, {batch} event{'s' if batch > 1 else ''}/job",
        argv,
        bench.client,
        hookline_probe(DEFAULT_QUEUE, jobs),
        events=len(events),
        log=bench.work / f"hookline-{batch}.log",
        cwd=ROOT,
        env=bench.env,
        redis_pid=bench.redis_pid,
    )
    _check_hookline(bench.client, len(events))
    return drain


def run_end_to_end(bench: WorkerBench, rate: float, duration: float, tag: str) -> Latency:
    """Phase (3): receiver and worker together, loaded at ``rate`` events/s."""
    wrk = find_wrk()
    # Enough signed events for the whole run with room to spare: a pool that runs out
    # sends requests every receiver refuses, which the results would show.
    count = int(rate * duration * 1.2) + 100
    warm = int(WARMUP_RATE * WARMUP_SECONDS * 1.2) + 100
    warmup = write_pool(bench.work / f"warmup-{tag}", tag=f"w{tag}", threads=1, per_thread=warm)
    pool = write_pool(bench.work / f"latency-{tag}", tag=f"l{tag}", threads=1, per_thread=count)
    bench.client.flushall()
    return run_latency(
        wrk=wrk,
        config=bench.config,
        port=bench.port,
        client=bench.client,
        redis_pid=bench.redis_pid,
        warmup=warmup,
        pool=pool,
        rate=rate,
        duration=duration,
        queue=DEFAULT_QUEUE,
        work=bench.work,
        cwd=ROOT,
        env=bench.env,
    )


def _settings(opts: Options, body_bytes: int) -> dict[str, Any]:
    return {
        "events": opts.events,
        "batch": opts.batch,
        "repeat": opts.repeat,
        "latency_duration_s": opts.duration,
        "latency_loads": list(opts.loads),
        "body_bytes": body_bytes,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _drains(bench: WorkerBench, opts: Options, events: Sequence[SignedEvent]) -> list[Summary]:
    """Phases (1) and (2), interleaved ``opts.repeat`` times; stock RQ first."""
    batches = list(dict.fromkeys((opts.batch, 1)))
    runs: list[list[Drain]] = [[] for _ in range(1 + len(batches))]
    for round_ in range(1, opts.repeat + 1):
        _progress(f"round {round_} of {opts.repeat}, {len(events):,} events per drain")
        runs[0].append(run_stock(bench, events))
        _progress(f"  (1) stock rq: {runs[0][-1].events_per_s:,.0f} jobs/s")
        for index, batch in enumerate(batches, start=1):
            runs[index].append(run_hookline(bench, events, batch))
            _progress(f"  (2) hookline, {batch}/job: {runs[index][-1].events_per_s:,.0f} events/s")
    return [Summary(r[0].label, tuple(r)) for r in runs]


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; 0 when hookline reaches the target ratio, else 1."""
    opts = parse_options(argv)
    settings: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hookline-bench-worker-") as tmp:
        work = Path(tmp)
        pool = write_pool(work / "drain", tag="d", threads=1, per_thread=opts.events)
        settings = _settings(opts, pool.body_size)
        events = signed_events(pool)
        with EmbeddedRedis(work / "redis", appendfsync="everysec") as server:
            client = redis.Redis.from_url(server.url)
            port = free_port()
            config = write_config(work, server.url, port)
            assert server.process is not None  # started by the with statement
            bench = WorkerBench(client, server.url, server.process.pid, config, port, work)
            try:
                stock, *hookline = _drains(bench, opts, events)
                best = max(h.events_per_s for h in hookline)
                rates = [opts.rate] if opts.rate else [best * share for share in opts.loads]
                latency = []
                for index, rate in enumerate(rates):
                    _progress(f"(3) latency: {rate:,.0f} events/s for {opts.duration:g} s")
                    latency.append(run_end_to_end(bench, rate, opts.duration, str(index)))
            finally:
                client.close()
    results = Results(settings, stock, tuple(hookline), tuple(latency))
    document = results.as_json()
    print(json.dumps(document, indent=2) if opts.json else table(results))
    if opts.save:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        saved = RESULTS_DIR / f"worker-{stamp}.json"
        saved.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        _progress(f"saved {saved}")
    return 0 if results.target_met() else 1
