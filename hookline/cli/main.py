"""The ``hookline`` command: a thin layer over the library."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from hookline.cli.options import (
    DEV_CONFIG,
    NO_CONFIG,
    config_option,
    load,
    log_format_option,
    log_level_option,
)
from hookline.config.settings import REDIS_URL_ENV
from hookline.errors import HooklineError
from hookline.logs import JsonLines, configure_logging

__all__ = ["DEV_CONFIG", "main"]


@click.group()
@click.version_option(package_name="hookline")
def main() -> None:
    """hookline: receive provider webhooks into Redis and process them with workers."""


@main.command()
@config_option()
@click.option("--host", help="Bind address (default: server.host).")
@click.option("--port", type=int, help="Port (default: server.port).")
@click.option(
    "--processes",
    "-n",
    type=click.IntRange(1, 256),
    help="Receiver processes on the port (default: server.processes).",
)
@log_level_option
@log_format_option
def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    processes: int | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the HTTP receiver (N processes under a supervisor with --processes N)."""
    from hookline.ingest.processes import serve_processes

    settings = load(config_path)
    stream = configure_logging(log_level, log_format)
    if not settings.redis_url:
        raise click.ClickException(
            f"redis.url is not set: set it in the configuration or {REDIS_URL_ENV}, "
            "or use `hookline dev` for an embedded Redis"
        )
    # JSON access lines skip structlog's processor chain (the hot path); console ones do not.
    access_log = JsonLines(stream, log_level) if stream is not None else None
    try:
        code = serve_processes(
            settings,
            processes=processes,
            host=host,
            port=port,
            access_log=access_log,
            port_key="server.port" if port is None else "--port",
        )
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@config_option(discover=True)
@click.argument("source")
@click.option("--type", "event_type", help="Event type (default: hookline.test).")
@click.option("--data", help="Body: JSON text, or @FILE to read it from a file.")
@click.option("--url", help="Receiver URL (default: from server.host/port and SOURCE).")
@click.option(
    "--private-key",
    envvar="HOOKLINE_PRIVATE_KEY",
    help="Sign with this private key (from `hookline keygen SCHEME`) instead of a secret.",
)
def send(
    config_path: str | None,
    source: str,
    event_type: str | None,
    data: str | None,
    url: str | None,
    private_key: str | None,
) -> None:
    """Sign a sample event as SOURCE's provider would (first secret, or --private-key)
    and POST it."""
    from hookline.cli.send import build_request, post
    from hookline.redis.connection import mask_url
    from hookline.terminal import safe, safe_lines

    settings = load(config_path or str(DEV_CONFIG))
    body: bytes | None = None
    if data is not None:
        if data.startswith("@"):
            try:
                body = Path(data[1:]).read_bytes()
            except OSError as exc:
                raise click.ClickException(f"cannot read {data[1:]}: {exc.strerror}") from None
        else:
            body = data.encode()
    try:
        request = build_request(
            settings, source, event_type=event_type, data=body, url=url, private_key=private_key
        )
    except (HooklineError, ValueError) as exc:  # our messages: URLs in them are masked
        raise click.ClickException(str(exc)) from None
    shown = mask_url(request.url)
    try:
        status, answer = asyncio.run(post(request))
    except ValueError:  # the HTTP client's words would quote the URL, credentials and all
        raise click.ClickException(
            f"invalid receiver URL {shown}: expected http://HOST:PORT/hooks/SOURCE "
            "(percent-encode reserved characters in credentials)"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach {shown}: {safe(str(exc))}") from None
    click.echo(f"POST {shown} -> {status}")
    click.echo("\n".join(safe_lines(answer.decode(errors="replace"))))
    if status >= 400:
        sys.exit(1)


def handlers_importable_from_here() -> None:
    """Put the current directory on ``sys.path``: handler modules are found from here, as
    with ``rq worker``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _queues(value: tuple[str, ...]) -> list[str]:
    return [q.strip() for item in value for q in item.split(",") if q.strip()]


@main.command()
@config_option()
@click.option(
    "--queues",
    "-q",
    multiple=True,
    help="Queues to work, in priority order (comma-separated or repeated). "
    "Default: workers.queues.",
)
@click.option(
    "--processes",
    "-n",
    type=click.IntRange(1, 256),
    help="Worker processes (default: workers.processes).",
)
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@log_level_option
@log_format_option
def work(
    config_path: str | None,
    queues: tuple[str, ...],
    processes: int | None,
    burst: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run worker processes under a supervisor that restarts any that die."""
    from hookline.redis.connection import check_server
    from hookline.workers.handlers import load_router
    from hookline.workers.supervisor import Supervisor

    settings = load(config_path)
    configure_logging(log_level, log_format)
    if not settings.redis_url:
        raise click.ClickException(
            f"redis.url is not set: set it in the configuration or {REDIS_URL_ENV}"
        )
    handlers_importable_from_here()
    try:
        load_router(settings.workers.handlers)  # fail here, once, not in every child
        check_server(settings.redis_url)
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None
    supervisor = Supervisor(
        settings,
        settings.redis_url,
        processes=processes or settings.workers.processes,
        queues=_queues(queues) or list(settings.workers.queues),
        burst=burst,
    )
    try:
        code = supervisor.run()
    except HooklineError as exc:  # the metrics port taken, before any worker started
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@config_option(discover=True)
def check(config_path: str | None) -> None:
    """Check the configuration, each source, each handler module and Redis; exit 1 on any
    error.

    Warnings (Redis settings that can lose events) are printed but do not fail.
    """
    from hookline.cli.check import has_errors, render, run_checks

    if config_path is None:
        raise click.ClickException(NO_CONFIG)
    handlers_importable_from_here()
    findings = run_checks(config_path, os.environ)
    click.echo(render(findings))
    if has_errors(findings):
        sys.exit(1)


# The larger commands live in modules of their own, registered once the group exists.
from hookline.cli.audit import audit  # noqa: E402
from hookline.cli.console import console  # noqa: E402
from hookline.cli.dev import dev  # noqa: E402
from hookline.cli.dlq import dlq  # noqa: E402
from hookline.cli.keygen import keygen  # noqa: E402

main.add_command(dev)
main.add_command(console)
main.add_command(dlq)
main.add_command(audit)
main.add_command(keygen)
