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
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from types import FrameType

import redis
import structlog

from hookline.config.settings import Settings
from hookline.supervise import ProcessGroup

log = structlog.get_logger("hookline.supervisor")

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
        self._group = ProcessGroup(
            "worker",
            processes,
            self._spawn,
            reaped=lambda slot, proc: self._forget(proc.pid),
            finished=lambda code: code == 0 and self.burst,
        )
        self._metrics_dir: str | None = None
        self._probe: redis.Redis | None = None

    def _spawn(self, slot: int) -> BaseProcess:
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.settings, self.redis_url, self.queues, self.burst, self.setup),
            name=f"hookline-worker-{slot}",
        )
        proc.start()
        return proc

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._group.stopping:
            log.info("stopping workers", signal=signal.Signals(signum).name, grace=self.grace)
        self._group.stop()

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
        if self._group.stopping:
            return False, "stopping"
        if not self._group.any_alive():
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
        self._group.run()
        self._group.shutdown(self.grace)
        if self._metrics_dir:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        log.info("workers stopped")
        return 0
