"""Run the receiver as a process (``hookline serve``)."""

from __future__ import annotations

import structlog
from aiohttp import web

from config.settings import Settings
from hookline.metrics import serve_metrics
from ingest.app import METRICS, create_app

#: Seconds in-flight requests get to finish after SIGTERM.
SHUTDOWN_GRACE = 10.0


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    redis_url: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM: then stop accepting, finish in-flight requests, commit, exit."""
    app = create_app(settings, redis_url)
    if settings.metrics.receiver_port:
        serve_metrics(app[METRICS].registry, settings.metrics.host, settings.metrics.receiver_port)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    structlog.get_logger("hookline.ingest").info(
        "receiver starting", host=bind_host, port=bind_port, sources=sorted(settings.sources)
    )
    web.run_app(
        app,
        host=bind_host,
        port=bind_port,
        access_log=None,
        print=None,
        shutdown_timeout=SHUTDOWN_GRACE,
        handle_signals=True,
    )
