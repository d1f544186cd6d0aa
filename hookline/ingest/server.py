"""Run the receiver as a process (``hookline serve``)."""

from __future__ import annotations

import asyncio
import functools
import gc
import signal
import socket
from collections.abc import Callable

import structlog
from aiohttp import web, web_runner

from hookline.config.settings import Settings
from hookline.ingest.app import METRICS, READY, create_app
from hookline.listen import listen
from hookline.logs import LogLine
from hookline.metrics import serve_metrics

#: Seconds requests in flight get to finish once the drain delay is over; then as long
#: again, after the listener closes, for any still running.
SHUTDOWN_GRACE = 10.0
#: Seconds between two looks at the requests in flight while waiting for them.
IN_FLIGHT_POLL = 0.05

log = structlog.get_logger("hookline.ingest")


async def _drain_on_sigterm(
    app: web.Application, *, delay: float, grace: float = SHUTDOWN_GRACE
) -> None:
    """On SIGTERM: report not ready at once, keep serving, stop once nothing is in flight.

    For ``delay`` seconds ``/readyz`` answers 503 while requests are served as usual, so a
    load balancer stops routing here. Then the receiver waits, up to ``grace`` seconds,
    until no webhook request is inside its handler (one whose headers have come counts,
    though its body may still be arriving), and only then stops through aiohttp's
    graceful shutdown: it closes the listener and every connection (bytes arriving after
    that are dropped, aio-libs/aiohttp#2298, so an upload must not be left in flight),
    lets what still runs finish (up to :data:`SHUTDOWN_GRACE`) and commits what is pending.

    New connections are still accepted during that wait: readiness is already 503, so only
    a client that ignores it, or a request already on its way, comes in, and is served.
    """
    loop = asyncio.get_running_loop()
    metrics = app[METRICS]

    def stop(deadline: float) -> None:
        if metrics.in_flight and loop.time() < deadline:
            loop.call_later(IN_FLIGHT_POLL, stop, deadline)
            return
        if metrics.in_flight:
            log.warning("stopping with requests in flight", in_flight=metrics.in_flight)
        raise web_runner.GracefulExit

    def begin() -> None:
        if not app[READY][0]:
            return
        app[READY][0] = False
        log.info("draining", delay=delay, grace=grace)
        loop.call_later(delay, stop, loop.time() + delay + grace)

    loop.add_signal_handler(signal.SIGTERM, begin)


#: Net allocations of container objects between two young-generation collections
#: (CPython's default is 700). A request allocates a few hundred that die with it,
#: freed by reference counting; at the default, the collector ran every few requests,
#: scanning every in-flight request's objects each time: ~5 % of the receiver's CPU.
GC_YOUNG_THRESHOLD = 10_000


async def _freeze(app: web.Application) -> None:
    # Everything alive after start-up lives as long as the process: keep it out of the
    # garbage collector's generations, so collections during load stay short, and rare.
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


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
    port_key: str = "server.port",
    sock: socket.socket | None = None,
    prepare: Callable[[web.Application], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM: then stop accepting, finish in-flight requests, commit, exit.

    Args:
        port_key: what chose ``port`` (a key or a flag), named if the port is taken.
        sock: a listening socket to serve instead of binding ``host:port``.
        prepare: called with the application before it starts (to add hooks).

    Raises:
        ListenError: when the receiver's or the metrics' port cannot be bound.
    """
    app = create_app(settings, redis_url, access_log=access_log)
    if prepare is not None:
        prepare(app)
    app.on_startup.append(functools.partial(_drain_on_sigterm, delay=settings.server.drain_delay))
    app.on_startup.append(_freeze)
    if settings.metrics.receiver_port:
        serve_metrics(
            app[METRICS].registry,
            settings.metrics.host,
            settings.metrics.receiver_port,
            key="metrics.receiver_port",
        )
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    if sock is None:
        sock = listen(bind_host, bind_port, port_key)
    else:
        bind_host, bind_port = sock.getsockname()[:2]
    log.info("receiver starting", host=bind_host, port=bind_port, sources=sorted(settings.sources))
    web.run_app(
        app,
        loop=_new_loop(),
        sock=sock,
        access_log=None,
        print=None,
        # aiohttp starts this timer when a connection opens and after each response, and
        # closes the connection if no complete request head has come when it fires.
        keepalive_timeout=settings.server.keepalive_timeout,
        shutdown_timeout=SHUTDOWN_GRACE,
        handle_signals=True,
    )
    log.info("receiver stopped")
