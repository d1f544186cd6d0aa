"""``hookline console``: serve the on-call web console."""

from __future__ import annotations

from pathlib import Path

import click

from hookline.cli.options import (
    DEV_CONFIG_FILE,
    NO_CONFIG,
    config_option,
    dev_running,
    log_format_option,
    log_level_option,
)
from hookline.config.settings import load_settings
from hookline.errors import HooklineError
from hookline.logs import configure_logging


@click.command()
@config_option(discover=True)
@click.option("--host", help="Bind address (default: console.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: console.port, 8081).")
@log_level_option
@log_format_option
def console(
    config_path: str | None, host: str | None, port: int | None, log_level: str, log_format: str
) -> None:
    """Serve the web console: queue depths, dead letters, replay and purge.

    Every request needs console.token (HOOKLINE_CONSOLE_TOKEN): log in with it in the
    browser, or send it as `Authorization: Bearer TOKEN`.
    """
    from hookline.console.app import serve_console
    from hookline.redis.connection import check_server

    if config_path is None:
        raise click.ClickException(NO_CONFIG)
    try:
        settings = load_settings(config_path)
        if port is None and Path(config_path) == DEV_CONFIG_FILE and dev_running():
            where = f"http://{settings.console.host}:{settings.console.port}/"
            raise click.ClickException(
                f"`hookline dev` serves the console here already, at {where} (its login "
                f"link, or console.token in {DEV_CONFIG_FILE}); --port PORT for another"
            )
        configure_logging(log_level, log_format)
        if settings.redis_url:
            check_server(settings.redis_url)
        key = "console.port" if port is None else "--port"
        serve_console(settings, host=host, port=port, port_key=key)
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None
