"""``hookline serve --processes N``: N receiver processes on one port, supervised.

On Linux each process listens on a socket of its own, all bound to the same address with
``SO_REUSEPORT``: the kernel spreads new connections over them, and a process that dies
takes only its own socket with it (the others keep serving the port). The supervisor
holds the address with a socket bound but not listening, so that the port stays this
server's while a process is being replaced, and a port that is taken is one start-up
error. Elsewhere (where ``SO_REUSEPORT`` does not spread connections) the supervisor
listens once and every process accepts from that one socket.

A process is one ``hookline serve`` (:func:`hookline.ingest.server.serve`): SIGTERM
drains it as it drains one process. The supervisor forwards SIGTERM to all and waits for
each to finish its drain. A process that dies is replaced as ``hookline work`` replaces a
worker (:class:`hookline.supervise.ProcessGroup`). Metrics are counted in each process
and summed by the supervisor (:mod:`hookline.ingest.snapshots`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from hookline.config.settings import Settings
from hookline.ingest.app import METRICS
from hookline.ingest.server import SHUTDOWN_GRACE, serve
from hookline.ingest.snapshots import SnapshotWriter, SummedCollector, snapshot_path
from hookline.listen import listen
from hookline.logs import LogLine
from hookline.metrics import serve_metrics
from hookline.redis.connection import check_server
from hookline.supervise import ProcessGroup

log = structlog.get_logger("hookline.ingest")

#: Seconds between a receiver process's looks at whether its supervisor still runs.
PARENT_POLL = 1.0
#: Seconds beyond its drain a receiver process gets before it is killed.
EXIT_MARGIN = 5.0


def spreads_connections() -> bool:
    """Whether this system's ``SO_REUSEPORT`` spreads connections over the sockets bound
    to one address (Linux's does; BSD's and macOS's hand them all to one)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _watch_parent(parent_pid: int) -> Callable[[web.Application], Awaitable[None]]:
    """An on-startup hook: drain this process (as on SIGTERM) once its supervisor is gone,
    so that a supervisor killed with SIGKILL leaves no receiver behind."""

    async def start(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def look() -> None:
            if os.getppid() != parent_pid:
                log.warning("supervisor gone; draining", parent_pid=parent_pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            loop.call_later(PARENT_POLL, look)

        loop.call_later(PARENT_POLL, look)

    return start


class ReceiverProcesses:
    """Keeps ``processes`` receivers serving ``host:port`` until SIGTERM or SIGINT."""

    def __init__(
        self,
        settings: Settings,
        *,
        processes: int,
        host: str,
        port: int,
        redis_url: str | None = None,
        access_log: LogLine | None = None,
        port_key: str = "server.port",
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self.port_key = port_key
        self.redis_url = redis_url
        self.access_log = access_log
        self.reuse_port = spreads_connections()
        self.grace = settings.server.drain_delay + 2 * SHUTDOWN_GRACE + EXIT_MARGIN
        # Each process counts for itself; the supervisor alone serves metrics.
        self._child_settings = settings.model_copy(
            update={"metrics": settings.metrics.model_copy(update={"receiver_port": 0})}
        )
        self._ctx = multiprocessing.get_context("fork")
        self._sock: socket.socket | None = None
        self._metrics_dir: Path | None = None
        self._summed: SummedCollector | None = None
        self._group = ProcessGroup("receiver", processes, self._spawn, reaped=self._reaped)

    def _spawn(self, slot: int) -> BaseProcess:
        proc = self._ctx.Process(
            target=self._child_main, args=(slot, os.getpid()), name=f"hookline-serve-{slot}"
        )
        proc.start()
        return proc

    def _child_main(self, slot: int, parent_pid: int) -> None:
        # The fork inherited the supervisor's handlers; aiohttp installs its own.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        assert self._sock is not None
        if self.reuse_port:
            address = self._sock.getsockname()
            self._sock.close()  # the supervisor's placeholder: this process listens itself
            sock = listen(address[0], address[1], self.port_key, reuse_port=True)
        else:
            sock = self._sock
        metrics_dir = self._metrics_dir

        def prepare(app: web.Application) -> None:
            if metrics_dir is not None:
                path = snapshot_path(metrics_dir, slot, os.getpid())
                SnapshotWriter(app[METRICS].registry, path).attach(app)
            app.on_startup.append(_watch_parent(parent_pid))

        serve(
            self._child_settings,
            sock=sock,
            redis_url=self.redis_url,
            access_log=self.access_log,
            prepare=prepare,
        )

    def _reaped(self, slot: int, proc: BaseProcess) -> None:
        if self._summed is not None and proc.pid is not None:
            self._summed.retire(slot, proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._group.stopping:
            log.info("stopping receivers", signal=signal.Signals(signum).name, grace=self.grace)
        self._group.stop()

    def _serve_metrics(self) -> None:
        port = self.settings.metrics.receiver_port
        if not port:
            return
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="hookline-receiver-metrics-"))
        self._summed = SummedCollector(self._metrics_dir)
        registry = CollectorRegistry()
        registry.register(self._summed)
        serve_metrics(registry, self.settings.metrics.host, port, key="metrics.receiver_port")

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT, then drain every process; returns an exit code.

        Raises:
            ListenError: when ``host:port`` cannot be bound.
        """
        reuse = self.reuse_port
        self._sock = listen(
            self.host, self.port, self.port_key, reuse_port=reuse, listening=not reuse
        )
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self._serve_metrics()
            log.info(
                "receiver processes starting",
                processes=self._group.count,
                host=self.host,
                port=self._sock.getsockname()[1],
                balance="SO_REUSEPORT" if self.reuse_port else "one shared socket",
            )
            self._group.run()
            self._group.shutdown(self.grace)
        finally:
            self._sock.close()
            if self._metrics_dir is not None:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)
        log.info("receiver processes stopped")
        return 0


def serve_processes(
    settings: Settings,
    *,
    processes: int | None = None,
    host: str | None = None,
    port: int | None = None,
    access_log: LogLine | None = None,
    port_key: str = "server.port",
) -> int:
    """``hookline serve``: one receiver in this process, or ``processes`` (default:
    ``server.processes``) under a supervisor; returns the exit code.

    Args:
        port_key: what chose the port (a key or a flag), named if the port is taken.

    Raises:
        ListenError: when the address cannot be bound.
        RedisModeError: when redis.url names a Redis Cluster node.
    """
    if settings.redis_url:
        check_server(settings.redis_url)
    count = processes or settings.server.processes
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    if count == 1:
        serve(settings, host=bind_host, port=bind_port, access_log=access_log, port_key=port_key)
        return 0
    group = ReceiverProcesses(
        settings,
        processes=count,
        host=bind_host,
        port=bind_port,
        access_log=access_log,
        port_key=port_key,
    )
    return group.run()
