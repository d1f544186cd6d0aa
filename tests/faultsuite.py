"""The fault suite: steady signed load on a real pipeline while faults are injected.

A pipeline (``Pipeline``) is one Redis with ``appendfsync always``, a ledger Redis for
the handler's effects, receiver processes and a worker fleet. ``run_suite`` sends a
steady load with duplicates and failing handlers, injects faults on a schedule —
worker processes SIGKILLed, Redis restarted, a receiver restarted — then waits for the
work to settle and reconciles. ``tests/test_faults.py`` runs it at CI size and
``./run bench faults`` at full size.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from hookline.config.settings import DEFAULT_QUEUE
from hookline.dlq.store import DeadLetters
from hookline.redis import keys
from hookline.redis.embedded import EmbeddedRedis
from tests.cluster import Ledger, Receiver, WorkerFleet, write_pipeline_config
from tests.load import Delivery, SteadyLoad
from tests.reconcile import (
    RECEIVER_RESTART,
    REDIS_RESTART,
    WORKER_KILL,
    Fault,
    Reconciliation,
    Run,
    reconcile,
)

#: Names of the scheduled faults.
KILL_WORKER = "kill-worker"
RESTART_REDIS = "restart-redis"
KILL_REDIS = "kill-redis"
RESTART_RECEIVER = "restart-receiver"


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    """The size of a run: load, processes and when each fault strikes (seconds in)."""

    duration: float = 20.0
    rate: float = 80.0
    receivers: int = 2
    workers: int = 3
    duplicate_ratio: float = 0.10
    fail_ratio: float = 0.05
    dead_ratio: float = 0.01
    schedule: tuple[tuple[float, str], ...] = (
        (2.0, KILL_WORKER),
        (4.0, RESTART_REDIS),
        (6.0, KILL_WORKER),
        (8.0, RESTART_RECEIVER),
        (10.0, KILL_WORKER),
        (12.0, KILL_REDIS),
        (14.0, KILL_WORKER),
        (16.0, RESTART_RECEIVER),
    )
    settle_timeout: float = 40.0
    seed: int = 1
    #: A provider's retries, compressed: an event refused (no answer, or a 5xx) is sent
    #: again after each of these delays, to the other receiver.
    redelivery: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)


@dataclass
class SuiteResult:
    """What a run produced: the reconciliation and facts about each fault."""

    reconciliation: Reconciliation
    faults: list[Fault]
    receiver_exit_codes: list[int] = field(default_factory=list)
    #: Per worker kill: seconds until the fleet was whole again (None: not by the end).
    worker_restart_seconds: list[float | None] = field(default_factory=list)
    skipped_ticks: int = 0
    seconds: float = 0.0

    def render(self) -> str:
        """The reconciliation report and the faults' own figures."""
        restarts = ", ".join(
            "never" if s is None else f"{s:.1f}" for s in self.worker_restart_seconds
        )
        return "\n".join(
            [
                self.reconciliation.render(),
                f"receiver exit codes after SIGTERM: {self.receiver_exit_codes}",
                f"seconds until a killed worker was replaced: [{restarts}]",
                f"load ticks skipped (client saturated): {self.skipped_ticks}; "
                f"run took {self.seconds:.1f} s",
            ]
        )


class Pipeline:
    """Redis (AOF always), a ledger, receivers and a worker fleet, all real processes."""

    def __init__(self, directory: Path, *, receivers: int, workers: int) -> None:
        self.directory = directory
        self.redis = EmbeddedRedis(directory / "redis", appendfsync="always")
        self.ledger_server = EmbeddedRedis(directory / "ledger")
        self.ledger = Ledger(self.ledger_server)
        self.config = write_pipeline_config(directory / "hookline.toml", self.redis.url)
        self.receivers = [
            Receiver(self.config, directory / f"serve-{i}.log") for i in range(receivers)
        ]
        self.fleet = WorkerFleet(
            self.config, directory / "work.log", self.ledger.url, processes=workers
        )
        self.client = redis.Redis.from_url(self.redis.url)

    def start(self) -> None:
        """Start both Redis servers, the receivers and the workers; return once all run."""
        self.redis.start()
        self.ledger_server.start()
        for receiver in self.receivers:
            receiver.start()
        self.fleet.start()
        self.fleet.wait_for_workers()

    def close(self) -> None:
        """Stop every process and server."""
        for proc in [self.fleet, *self.receivers]:
            if proc.alive():
                proc.stop()
        self.client.close()
        self.ledger.close()
        self.redis.close()
        self.ledger_server.close()

    def urls(self) -> list[str]:
        """The hook URLs of every receiver (some may be restarting)."""
        return [r.url() for r in self.receivers]


def unsettled(client: redis.Redis) -> int:
    """Jobs queued or claimed plus retries scheduled; -1 while Redis does not answer."""
    try:
        held = sum(int(client.llen(key)) for key in client.scan_iter(keys.worker_jobs("*")))
        queued = int(client.llen(keys.rq_queue(DEFAULT_QUEUE)))
        return queued + int(client.zcard(keys.retries())) + held
    except redis.RedisError:
        return -1


def dead_event_ids(client: redis.Redis) -> set[str]:
    """The event ids in the dead-letter queue."""
    return {letter.envelope.id for letter in DeadLetters(client).scan()}


def settle(
    client: redis.Redis, ledger: Ledger, deliveries: Sequence[Delivery], timeout: float
) -> None:
    """Wait until no work is left and every acknowledged event is resolved (or the timeout)."""
    deadline = time.monotonic() + timeout
    acknowledged = {d.event_id for d in deliveries if d.acknowledged}
    while time.monotonic() < deadline:
        if unsettled(client) == 0:
            with contextlib.suppress(redis.RedisError):
                if acknowledged <= set(ledger.effects()) | dead_event_ids(client):
                    return
        time.sleep(0.2)


def collect(
    client: redis.Redis, ledger: Ledger, deliveries: Sequence[Delivery], faults: Sequence[Fault]
) -> Reconciliation:
    """Reconcile the deliveries with the ledger and the dead-letter queue."""
    effects = ledger.effects()
    runs = {
        event_id: [Run(*run) for run in ledger.runs(event_id)]
        for event_id, count in effects.items()
        if count > 1
    }
    dead = dead_event_ids(client)
    return reconcile(deliveries, effects, runs, dead, ledger.failures(), faults)


class FleetWatcher:
    """Samples the worker fleet's pids from a thread, to time the replacement of a kill."""

    def __init__(self, fleet: WorkerFleet, every: float = 0.05) -> None:
        self.fleet = fleet
        self.samples: list[tuple[float, frozenset[int]]] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, name="fleet-watcher", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append((time.time(), frozenset(self.fleet.workers())))

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=5)

    def replaced_after(self, fault: Fault) -> float | None:
        """Seconds from a kill until the fleet was whole again without the victim."""
        for at, pids in self.samples:
            whole = len(pids) >= self.fleet.processes and not pids & set(fault.pids)
            if at > fault.start and whole:
                return at - fault.start
        return None


def _kill_worker(pipeline: Pipeline, rng: random.Random) -> Fault:
    pids = pipeline.fleet.workers()
    if not pids:
        at = time.time()
        return Fault(WORKER_KILL, at, at, "no worker was running")
    victim = rng.choice(pids)
    at = time.time()
    os.kill(victim, signal.SIGKILL)
    return Fault(WORKER_KILL, at, at, f"pid {victim}", (victim,))


def _restart_redis(pipeline: Pipeline, *, kill: bool) -> Fault:
    start = time.time()
    pipeline.redis.restart(kill=kill)
    return Fault(REDIS_RESTART, start, time.time(), "SIGKILL" if kill else "SIGTERM")


def _restart_receiver(pipeline: Pipeline, rng: random.Random) -> tuple[Fault, int]:
    receiver = rng.choice(pipeline.receivers)
    start = time.time()
    code = receiver.stop(signal.SIGTERM)
    receiver.start()
    return Fault(RECEIVER_RESTART, start, time.time(), f"port {receiver.port}"), code


def _ticks(schedule: Sequence[tuple[float, str]], began: float) -> Iterator[str]:
    for at, name in sorted(schedule):
        delay = began + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield name


def run_suite(directory: Path, options: SuiteOptions) -> SuiteResult:
    """Run the load and the faults on a fresh pipeline, then reconcile."""
    rng = random.Random(options.seed)
    pipeline = Pipeline(directory, receivers=options.receivers, workers=options.workers)
    started = time.monotonic()
    try:
        pipeline.start()
        load = SteadyLoad(
            pipeline.urls,
            rate=options.rate,
            duplicate_ratio=options.duplicate_ratio,
            fail_ratio=options.fail_ratio,
            dead_ratio=options.dead_ratio,
            seed=options.seed,
            redelivery=options.redelivery,
        )
        faults: list[Fault] = []
        result = SuiteResult(Reconciliation(), faults)
        watcher = FleetWatcher(pipeline.fleet)
        watcher.start()
        load.start()
        began = time.monotonic()
        try:
            for name in _ticks(options.schedule, began):
                if name == KILL_WORKER:
                    fault = _kill_worker(pipeline, rng)
                elif name in (RESTART_REDIS, KILL_REDIS):
                    fault = _restart_redis(pipeline, kill=name == KILL_REDIS)
                elif name == RESTART_RECEIVER:
                    fault, code = _restart_receiver(pipeline, rng)
                    result.receiver_exit_codes.append(code)
                else:
                    raise ValueError(f"unknown fault {name!r}")
                faults.append(fault)
            remaining = began + options.duration - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        finally:
            load.stop()
        settle(pipeline.client, pipeline.ledger, load.deliveries, options.settle_timeout)
        watcher.stop()
        result.worker_restart_seconds = [
            watcher.replaced_after(f) for f in faults if f.kind == WORKER_KILL
        ]
        result.reconciliation = collect(pipeline.client, pipeline.ledger, load.deliveries, faults)
        result.skipped_ticks = load.skipped
        result.seconds = time.monotonic() - started
        return result
    finally:
        pipeline.close()
