"""The console application: ``create_console_app(settings)`` and ``serve_console``.

State lives under ``web.AppKey``s (see :mod:`hookline.console.pages`); the Redis client
opens and closes in a cleanup context, which also stops running operations between
two atomic steps when the console shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import redis
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from hookline.config.settings import Settings
from hookline.console import actions, pages
from hookline.console.operations import Operations
from hookline.console.pages import (
    DLQ,
    GUARD,
    OPERATIONS,
    QUEUES,
    SEARCH,
    SETTINGS,
    TEMPLATES,
    render,
)
from hookline.console.security import (
    Guard,
    allowed_hosts,
    check_startup,
    guard_middleware,
    is_loopback,
    security_headers,
)
from hookline.dlq.search import Search
from hookline.dlq.store import DeadLetters
from hookline.errors import ConfigError
from hookline.listen import listen
from hookline.redis.connection import sync_client

log = structlog.get_logger("hookline.console")

STATIC = Path(__file__).resolve().parent / "static"


def configured_queues(settings: Settings) -> list[str]:
    """Every queue the configuration names: workers' queues and sources' targets."""
    named = {*settings.workers.queues, *(s.queue for s in settings.sources.values())}
    return sorted(named)


@web.middleware
async def redis_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Show Redis being unreachable as a 503 page rather than a stack trace."""
    try:
        return await handler(request)
    except redis.RedisError as exc:
        log.warning("console redis error", path=request.path, error=type(exc).__name__)
        return render(
            request,
            "error.html",
            status=503,
            title="Redis is unreachable",
            message=f"{type(exc).__name__}: {exc}. Check redis.url and that Redis is up.",
        )


def create_console_app(settings: Settings, redis_url: str | None = None) -> web.Application:
    """Build the console for ``settings``.

    Args:
        settings: the validated configuration; ``console.token`` must be set.
        redis_url: overrides ``settings.redis_url``.

    Raises:
        ConfigError: when no token or no Redis URL is configured.
    """
    token = check_startup(settings, settings.console.host)
    url = redis_url or settings.redis_url
    if not url:
        raise ConfigError("redis.url: not set; set it in the file or HOOKLINE_REDIS_URL")
    guard = Guard(
        token,
        trusted_proxies=settings.server.trusted_proxies,
        secure_cookies=settings.console.secure_cookies,
    )
    app = web.Application(
        middlewares=[guard_middleware(guard, allowed_hosts(settings)), redis_errors]
    )
    app[SETTINGS] = settings
    app[GUARD] = guard
    app[TEMPLATES] = pages.templates()
    app[QUEUES] = configured_queues(settings)
    app[OPERATIONS] = Operations()

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        client = sync_client(url)
        app[DLQ] = DeadLetters(client)
        app[SEARCH] = Search(app[DLQ])
        yield
        await app[OPERATIONS].close()
        client.close()

    app.cleanup_ctx.append(redis_ctx)
    app.on_response_prepare.append(security_headers)
    router = app.router
    router.add_get("/login", pages.login_form)
    router.add_post("/login", pages.login)
    router.add_post("/logout", pages.logout)
    router.add_get("/", pages.overview_page)
    router.add_get("/dead-letters", pages.list_page)
    router.add_get("/dead-letters/{id}", pages.detail_page)
    router.add_post("/replay", actions.replay)
    router.add_post("/purge", actions.purge)
    router.add_get("/operations/{op}", actions.operation_page)
    router.add_post("/operations/{op}/stop", actions.stop_operation)
    router.add_static("/static/", STATIC)
    return app


def serve_console(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    port_key: str = "console.port",
) -> None:
    """Serve the console until SIGINT/SIGTERM.

    Args:
        port_key: what chose ``port`` (a key or a flag), named if the port is taken.

    Raises:
        ConfigError: when no token is configured, or no Redis URL.
        ListenError: when the port cannot be bound.
    """
    bind_host = host or settings.console.host
    bind_port = settings.console.port if port is None else port
    check_startup(settings, bind_host)
    app = create_console_app(settings)
    sock = listen(bind_host, bind_port, port_key)
    if not is_loopback(bind_host):
        log.warning(
            "console listening beyond loopback: put it behind TLS, the token is sent with "
            "every request",
            host=bind_host,
        )
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    log.info("console starting", url=f"http://{shown}:{bind_port}/")
    web.run_app(app, sock=sock, access_log=None, print=None)
    log.info("console stopped")
