"""Run N worker processes under one supervisor (``hookline work``).

The supervisor restarts a worker that dies (at once if it had been running, after a
growing pause if it keeps dying at start), forwards SIGTERM/SIGINT as a warm shutdown,
and kills what has not finished after the grace period. Whatever a killed worker held
goes back to its queue through the heartbeat mechanism, so nothing is lost either way.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from types import FrameType

import redis
import structlog

from hookline.config.settings import Settings

log = structlog.get_logger("hookline.supervisor")

#: Seconds between restarts of a worker that keeps dying, at most.
MAX_RESTART_PAUSE = 30.0
#: Pause before restarting a worker that died during its start-up; doubled each time
#: the slot's next worker does so again.
FIRST_RESTART_PAUSE = 0.5
#: Seconds a worker must have run for its death not to count as a start-up failure:
#: longer than start-up takes, Redis connect timeout (2 s) included.
HEALTHY_RUN = 5.0
#: Seconds between two looks at the worker processes.
POLL_INTERVAL = 0.2
#: prometheus-client's switch to multi-process mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _worker_main(
    settings: Settings,
    redis_url: str,
    queues: list[str],
    burst: bool,
    setup: Callable[[], None] | None,
) -> None:
    from hookline.workers.worker import Worker

    # The fork inherited the supervisor's handlers: a SIGTERM before the worker installs
    # its own must simply end this process, which holds no work yet.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if setup is not None:
        setup()
    observer = None
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import CollectorRegistry

        from hookline.metrics import WorkerMetrics
        from hookline.workers.observe import MetricsObserver

        observer = MetricsObserver(WorkerMetrics(CollectorRegistry()))
    worker = Worker(
        settings, redis_url, queues=queues, burst=burst, parent_pid=os.getppid(), observer=observer
    )
    worker.install_signal_handlers()
    raise SystemExit(worker.run())


class RestartBackoff:
    """How long each slot waits before its worker is started again.

    A worker that dies during start-up (a bad handler, Redis unreachable) is restarted
    after ``first`` seconds, then twice as long each time its successor does the same, up
    to ``most``: a crash loop must not make the supervisor spin. A worker that had run
    ``healthy_after`` seconds is restarted at once, and its slot's pauses start over.
    """

    def __init__(
        self,
        *,
        first: float = FIRST_RESTART_PAUSE,
        most: float = MAX_RESTART_PAUSE,
        healthy_after: float = HEALTHY_RUN,
    ) -> None:
        self.first = first
        self.most = most
        self.healthy_after = healthy_after
        self._last: dict[int, float] = {}

    def pause(self, slot: int, ran_for: float) -> float:
        """Seconds to wait before restarting ``slot``, whose worker died after ``ran_for`` s."""
        if ran_for >= self.healthy_after:
            self._last.pop(slot, None)
            return 0.0
        last = self._last.get(slot)
        pause = self.first if last is None else min(self.most, last * 2)
        self._last[slot] = pause
        return pause


class Supervisor:
    """Keeps ``processes`` workers running until told to stop."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        processes: int,
        queues: Sequence[str],
        burst: bool = False,
        grace: float | None = None,
        setup: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.processes = processes
        self.queues = list(queues)
        self.burst = burst
        self.grace = grace if grace is not None else settings.workers.handler_timeout + 5.0
        self.setup = setup
        self._ctx = multiprocessing.get_context("fork")
        self._children: dict[int, BaseProcess] = {}
        self._started: dict[int, float] = {}
        self._stopping = False
        self._metrics_dir: str | None = None
        self._probe: redis.Redis | None = None

    def _spawn(self, slot: int) -> None:
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.settings, self.redis_url, self.queues, self.burst, self.setup),
            name=f"hookline-worker-{slot}",
        )
        self._started[slot] = time.monotonic()
        proc.start()
        self._children[slot] = proc
        log.info("worker process started", slot=slot, pid=proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("stopping workers", signal=signal.Signals(signum).name, grace=self.grace)
        self._stopping = True

    def _serve_metrics(self) -> None:
        """Serve the sum of every worker's metrics plus queue state read from Redis.

        Must run before anything imports prometheus_client, which picks its
        single- or multi-process mode once, at import.
        """
        port = self.settings.metrics.worker_port
        if not port:
            return
        self._metrics_dir = tempfile.mkdtemp(prefix="hookline-metrics-")
        os.environ[MULTIPROC_ENV] = self._metrics_dir
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        from hookline.metrics import RedisStateCollector, serve_metrics
        from hookline.redis.connection import sync_client

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._metrics_dir)
        self._probe = sync_client(self.redis_url)
        registry.register(RedisStateCollector(self._probe, self.queues))
        serve_metrics(
            registry,
            self.settings.metrics.host,
            port,
            health=self.readiness,
            key="metrics.worker_port",
        )
        log.info("metrics served", host=self.settings.metrics.host, port=port)

    def readiness(self) -> tuple[bool, str]:
        """Ready while not stopping, with a worker process alive and Redis answering."""
        if self._stopping:
            return False, "stopping"
        if not any(proc.is_alive() for proc in list(self._children.values())):
            return False, "no-worker-process"
        try:
            if self._probe is not None:
                self._probe.ping()
        except Exception:  # any failure to reach Redis means not ready
            return False, "redis-unreachable"
        return True, "ready"

    def _forget(self, pid: int | None) -> None:
        if self._metrics_dir and pid is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self._metrics_dir)

    def run(self) -> int:
        """Supervise until stopped, or until every burst worker is done; returns an exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._serve_metrics()
        for slot in range(self.processes):
            self._spawn(slot)
        backoff = RestartBackoff()
        # Restarts are due at a deadline, never waited for in place: one slot's pause must
        # hold up neither another slot's restart nor a SIGTERM.
        restart_at: dict[int, float] = {}
        while not self._stopping and (self._children or restart_at):
            time.sleep(POLL_INTERVAL)
            now = time.monotonic()
            for slot, proc in list(self._children.items()):
                if proc.is_alive():
                    continue
                code = proc.exitcode
                del self._children[slot]
                self._forget(proc.pid)
                if code == 0 and self.burst:
                    continue
                ran_for = now - self._started[slot]
                pause = backoff.pause(slot, ran_for)
                log.error(
                    "worker process died; restarting",
                    slot=slot,
                    exitcode=code,
                    ran_for=round(ran_for, 1),
                    pause=pause,
                )
                restart_at[slot] = now + pause
            for slot, due in list(restart_at.items()):
                if due <= now and not self._stopping:
                    del restart_at[slot]
                    self._spawn(slot)
        return self._shutdown()

    def _shutdown(self) -> int:
        for proc in self._children.values():
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + self.grace
        for proc in self._children.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        killed = 0
        for proc in self._children.values():
            if proc.is_alive():
                proc.kill()
                proc.join()
                killed += 1
        if killed:
            log.warning("killed workers that outlived the grace period", count=killed)
        if self._metrics_dir:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        log.info("workers stopped")
        return 0
