"""``hookline console``: serve the on-call web console."""

from __future__ import annotations

import click

from hookline.config.settings import CONFIG_ENV, load_settings
from hookline.errors import HooklineError
from hookline.logs import configure_logging


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    help=f"Configuration file (TOML). Default: ${CONFIG_ENV}.",
)
@click.option("--host", help="Bind address (default: console.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: console.port, 8081).")
@click.option("--log-level", default="info", show_default=True)
def console(config_path: str | None, host: str | None, port: int | None, log_level: str) -> None:
    """Serve the web console: queue depths, dead letters, replay and purge.

    Every request needs console.token (HOOKLINE_CONSOLE_TOKEN): log in with it in the
    browser, or send it as `Authorization: Bearer TOKEN`.
    """
    from hookline.console.app import serve_console

    try:
        settings = load_settings(config_path)
        configure_logging(log_level)
        serve_console(settings, host=host, port=port)
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the address is taken or not ours to bind
        raise click.ClickException(f"cannot listen: {exc}") from None
