"""The systems under test: how each one's jobs are enqueued and its worker started.

Each system's worker is its own command line (``hookline work``, ``dramatiq``,
``celery worker``, ``arq``, ``rq worker``), one process, run from the repository with
``bench/peers`` on ``PYTHONPATH`` so that it imports its module of
:mod:`bench.peers.peerjobs` as ``peerjobs``. Jobs are enqueued with each system's own
client, the way an application would (hookline's the way its receiver does); the peer
libraries are imported only when a peer is enqueued, so that hookline and RQ run
without the ``bench`` extra.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench import BenchError
from bench.peers.isolated import ARQ_REQUIREMENT, environment, installed_version, python_of
from bench.peers.peerjobs.common import (
    ARQ_MAX_JOBS_ENV,
    ARQ_POLL_DELAY_ENV,
    INCR,
    QUEUE,
    REDIS_URL_ENV,
    SLEEP_INCR,
)
from bench.peers.peerjobs.hookline_jobs import ASYNC_SOURCE, INCR_SOURCE, SLEEP_SOURCE
from bench.worker import SignedEvent, enqueue_hookline

#: The handler kinds: (a) one INCR; (b) wait 10 ms then INCR, on threads or on asyncio.
INCR_KIND, SYNC_KIND, ASYNC_KIND = "a", "b-sync", "b-async"
KINDS = (INCR_KIND, SYNC_KIND, ASYNC_KIND)
#: What each kind's handler waits before its INCR, in seconds.
WAITS = {INCR_KIND: 0.0, SYNC_KIND: 0.010, ASYNC_KIND: 0.010}
#: Threads of the thread-based peers (Dramatiq's default; Celery and hookline set to it).
THREADS = 8
#: hookline's ``workers.concurrency`` for each kind, and arq's high ``max_jobs``.
HOOKLINE_CONCURRENCY = {INCR_KIND: THREADS, SYNC_KIND: THREADS, ASYNC_KIND: 200}
ARQ_HIGH_MAX_JOBS = 200
#: arq's ``poll_delay``: its default (0.5 s) starts at most ``max_jobs`` jobs per poll, so a
#: backlogged worker idles between polls (measured: 189 events/s for (a), 64 for (b)).
ARQ_POLL_DELAY = 0.001
#: Jobs per round trip when filling a peer's queue.
_CHUNK = 200
#: The repository: workers run from here.
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Context:
    """What enqueuing and starting a worker need."""

    client: redis.Redis
    url: str
    #: hookline's configuration file for each kind (its concurrency differs).
    hookline_configs: dict[str, Path]
    #: hookline events per job, as the receiver's group commit makes them under load.
    batch: int
    #: The run's scratch directory.
    work: Path


Argv = Callable[[Context, str], list[str]]
Enqueue = Callable[[Context, str, Sequence[SignedEvent]], None]


@dataclass(frozen=True, slots=True)
class System:
    """One system under test, in one configuration."""

    name: str
    #: The distribution whose version is reported, and that must be installed.
    package: str
    kinds: tuple[str, ...]
    #: What it was configured with, for the report.
    configured: str
    argv: Argv
    enqueue: Enqueue
    env: dict[str, str]
    #: Set for a peer installed in an environment of its own (:mod:`bench.peers.isolated`).
    isolated: bool = False

    @property
    def is_hookline(self) -> bool:
        """Whether this is hookline (the others are its peers)."""
        return self.package == "hookline"

    def prepare(self) -> None:
        """Make sure it can run here: create an isolated peer's environment.

        Raises:
            BenchError: when it cannot run (a ``bench`` extra missing, an install failing).
        """
        if self.isolated:
            _arq_python()
        elif self.version is None or importlib.util.find_spec(self.package) is None:
            raise BenchError(
                f"{self.package} is not installed: `./run bench peers` installs the bench "
                "extra (or choose --systems among those installed)"
            )

    @property
    def version(self) -> str | None:
        """The installed version, ``None`` when the package is missing."""
        if self.isolated:
            python = python_of("arq")
            return installed_version(python, self.package) if python.exists() else None
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None


def _tool(name: str) -> str:
    """A console script installed beside this Python (``rq``, ``celery``, ...)."""
    return str(Path(sys.executable).with_name(name))


def task_name(kind: str) -> str:
    """The peers' task for a handler kind."""
    return INCR if kind == INCR_KIND else SLEEP_INCR


def payloads(events: Sequence[SignedEvent]) -> Iterator[dict[str, Any]]:
    """Each event's body as the JSON object a peer's job carries."""
    for event in events:
        yield orjson.loads(event.body)


def _chunks(events: Sequence[SignedEvent]) -> Iterator[Sequence[SignedEvent]]:
    for start in range(0, len(events), _CHUNK):
        yield events[start : start + _CHUNK]


# hookline ---------------------------------------------------------------------------


def _hookline_argv(ctx: Context, kind: str) -> list[str]:
    config = str(ctx.hookline_configs[kind])
    return [sys.executable, "-m", "hookline", "work", "--config", config, "--processes", "1"]


def _hookline_enqueue(ctx: Context, kind: str, events: Sequence[SignedEvent]) -> None:
    source = {INCR_KIND: INCR_SOURCE, SYNC_KIND: SLEEP_SOURCE, ASYNC_KIND: ASYNC_SOURCE}[kind]
    enqueue_hookline(ctx.client, events, ctx.batch, source)


# stock RQ ---------------------------------------------------------------------------


def _rq_argv(worker_class: str | None) -> Argv:
    def argv(ctx: Context, kind: str) -> list[str]:
        found = [_tool("rq"), "worker", "--quiet", "-S", "rq.serializers.JSONSerializer"]
        found += ["-w", worker_class] if worker_class else []
        return [*found, "--url", ctx.url, QUEUE]

    return argv


def _rq_enqueue(ctx: Context, kind: str, events: Sequence[SignedEvent]) -> None:
    queue = Queue(QUEUE, connection=ctx.client, serializer=JSONSerializer)
    function = f"peerjobs.common.{task_name(kind)}"
    for chunk in _chunks(events):
        jobs = [Queue.prepare_data(function, args=(p,)) for p in payloads(chunk)]
        with ctx.client.pipeline() as pipe:
            queue.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()


# Dramatiq, Celery, arq (imported here only) ---------------------------------------


def _dramatiq_argv(ctx: Context, kind: str) -> list[str]:
    found = [_tool("dramatiq"), "peerjobs.dramatiq_jobs", "--processes", "1"]
    return [*found, "--threads", str(THREADS), "--queues", QUEUE]


def _dramatiq_enqueue(ctx: Context, kind: str, events: Sequence[SignedEvent]) -> None:
    from dramatiq import Message
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=ctx.url)
    broker.declare_queue(QUEUE)
    name = task_name(kind)
    try:
        for payload in payloads(events):
            broker.enqueue(Message(QUEUE, name, (payload,), {}, {}))
    finally:
        broker.close()


def _celery_argv(ctx: Context, kind: str) -> list[str]:
    found = [_tool("celery"), "-A", "peerjobs.celery_jobs", "worker", "--pool", "threads"]
    return [*found, "--concurrency", str(THREADS), "-Q", QUEUE]


def _celery_enqueue(ctx: Context, kind: str, events: Sequence[SignedEvent]) -> None:
    from celery import Celery

    app = Celery("peerbench", broker=ctx.url)
    name = task_name(kind)
    try:
        with app.producer_or_acquire() as producer:
            for payload in payloads(events):
                app.send_task(name, args=(payload,), queue=QUEUE, producer=producer)
    finally:
        app.close()


def _arq_python() -> Path:
    return environment("arq", ARQ_REQUIREMENT)


def _arq_argv(ctx: Context, kind: str) -> list[str]:
    arq = str(_arq_python().with_name("arq"))
    logging = ["--custom-log-dict", "peerjobs.arq_jobs.LOGGING"]
    return [arq, "peerjobs.arq_jobs.WorkerSettings", *logging]


def _arq_enqueue(ctx: Context, kind: str, events: Sequence[SignedEvent]) -> None:
    """Fill arq's queue from its own environment (:mod:`bench.peers.isolated`)."""
    lines = ctx.work / "arq-payloads.jsonl"
    lines.write_bytes(b"".join(e.body + b"\n" for e in events))
    argv = [str(_arq_python()), "-m", "peerjobs.arq_fill", ctx.url, task_name(kind), str(lines)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bench" / "peers")}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or done.stdout.strip() != str(len(events)):
        raise BenchError(f"arq: filling the queue failed:\n{(done.stdout + done.stderr)[-2000:]}")


def systems() -> list[System]:
    """Every system in the benchmark, hookline first, in the order a round runs them."""
    rq_both = (INCR_KIND, SYNC_KIND)
    arq_env = {ARQ_POLL_DELAY_ENV: str(ARQ_POLL_DELAY)}
    return [
        System(
            "hookline",
            "hookline",
            KINDS,
            f"`hookline work --processes 1`; workers.concurrency {THREADS} for (a) and "
            f"(b-sync), {HOOKLINE_CONCURRENCY[ASYNC_KIND]} for (b-async) where the key "
            "exists; jobs committed by hookline.redis.commit.Enqueuer in receiver-shaped batches",
            _hookline_argv,
            _hookline_enqueue,
            {},
        ),
        System(
            "dramatiq",
            "dramatiq",
            rq_both,
            f"`dramatiq --processes 1 --threads {THREADS}`, RedisBroker, default middleware "
            "(acks after the actor returns; prefetch 2 x threads)",
            _dramatiq_argv,
            _dramatiq_enqueue,
            {},
        ),
        System(
            "celery",
            "celery",
            rq_both,
            f"`celery worker --pool threads --concurrency {THREADS}`, Redis broker, "
            "task_acks_late (acks after the task returns), prefetch multiplier 4 "
            "(default), no result backend",
            _celery_argv,
            _celery_enqueue,
            {},
        ),
        System(
            "arq",
            "arq",
            (INCR_KIND, ASYNC_KIND),
            f"`arq WorkerSettings`, max_jobs 10 (default), poll_delay {ARQ_POLL_DELAY:g} s "
            "(default 0.5 s), results kept (default), per-job log lines off; in an environment "
            "of its own (arq pins redis-py < 6)",
            _arq_argv,
            _arq_enqueue,
            {**arq_env, ARQ_MAX_JOBS_ENV: "10"},
            isolated=True,
        ),
        System(
            f"arq max_jobs {ARQ_HIGH_MAX_JOBS}",
            "arq",
            (ASYNC_KIND,),
            f"as arq, max_jobs {ARQ_HIGH_MAX_JOBS}",
            _arq_argv,
            _arq_enqueue,
            {**arq_env, ARQ_MAX_JOBS_ENV: str(ARQ_HIGH_MAX_JOBS)},
            isolated=True,
        ),
        System(
            "rq SimpleWorker",
            "rq",
            rq_both,
            "`rq worker -w rq.worker.SimpleWorker --quiet -S JSONSerializer` (runs jobs in "
            "its own process)",
            _rq_argv("rq.worker.SimpleWorker"),
            _rq_enqueue,
            {},
        ),
        System(
            "rq (forking)",
            "rq",
            rq_both,
            "`rq worker --quiet -S JSONSerializer`: the default Worker, one forked work "
            "horse per job",
            _rq_argv(None),
            _rq_enqueue,
            {},
        ),
    ]


def worker_env(base: dict[str, str], system: System, url: str, root: Path) -> dict[str, str]:
    """The environment of ``system``'s worker: ``base``, the Redis URL, ``peerjobs``."""
    env = {**base, **system.env, REDIS_URL_ENV: url}
    path = str(root / "bench" / "peers")
    env["PYTHONPATH"] = path + (f":{base['PYTHONPATH']}" if base.get("PYTHONPATH") else "")
    return env
