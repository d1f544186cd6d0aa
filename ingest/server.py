"""Run the receiver as a process (``hookline serve``)."""

from __future__ import annotations

import asyncio
import functools
import gc
import signal

import structlog
from aiohttp import web, web_runner

from config.settings import Settings
from hookline.logs import LogLine
from hookline.metrics import serve_metrics
from ingest.app import METRICS, READY, create_app

#: Seconds in-flight requests get to finish after SIGTERM.
SHUTDOWN_GRACE = 10.0

log = structlog.get_logger("hookline.ingest")


async def _drain_on_sigterm(app: web.Application, *, delay: float) -> None:
    """On SIGTERM: report not ready at once, keep serving ``delay`` seconds, then stop.

    Stopping then closes the listener, lets in-flight requests finish (up to
    :data:`SHUTDOWN_GRACE`) and commits what is pending, through aiohttp's own
    graceful shutdown.
    """
    loop = asyncio.get_running_loop()

    def stop() -> None:
        raise web_runner.GracefulExit

    def begin() -> None:
        if not app[READY][0]:
            return
        app[READY][0] = False
        log.info("draining", delay=delay)
        loop.call_later(delay, stop)

    loop.add_signal_handler(signal.SIGTERM, begin)


async def _freeze(app: web.Application) -> None:
    # Everything alive after start-up lives as long as the process: keep it out of the
    # garbage collector's generations, so collections during load stay short.
    gc.freeze()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where installed (faster request handling), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    redis_url: str | None = None,
    access_log: LogLine | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM: then stop accepting, finish in-flight requests, commit, exit."""
    app = create_app(settings, redis_url, access_log=access_log)
    app.on_startup.append(functools.partial(_drain_on_sigterm, delay=settings.server.drain_delay))
    app.on_startup.append(_freeze)
    if settings.metrics.receiver_port:
        serve_metrics(app[METRICS].registry, settings.metrics.host, settings.metrics.receiver_port)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    log.info("receiver starting", host=bind_host, port=bind_port, sources=sorted(settings.sources))
    web.run_app(
        app,
        loop=_new_loop(),
        host=bind_host,
        port=bind_port,
        access_log=None,
        print=None,
        shutdown_timeout=SHUTDOWN_GRACE,
        handle_signals=True,
    )
