"""The ``hookline`` command: a thin layer over the library."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hookline.config.settings import CONFIG_ENV, REDIS_URL_ENV, load_settings
from hookline.errors import HooklineError
from hookline.logs import JsonLines, configure_logging

if TYPE_CHECKING:  # the schema (and pydantic) load with the first configuration, not --help
    from hookline.config.settings import Settings

#: The configuration ``hookline dev`` uses when none is given.
DEV_CONFIG = Path(__file__).resolve().parent.parent / "config" / "dev.toml"

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    help=f"Configuration file (TOML). Default: ${CONFIG_ENV}.",
)


def load(config_path: str | None) -> Settings:
    """Load settings or exit with the configuration error's message."""
    try:
        return load_settings(config_path)
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="hookline")
def main() -> None:
    """hookline: receive provider webhooks into Redis and process them with workers."""


@main.command()
@config_option
@click.option("--host", help="Bind address (default: server.host).")
@click.option("--port", type=int, help="Port (default: server.port).")
@click.option("--log-level", default="info", show_default=True)
def serve(config_path: str | None, host: str | None, port: int | None, log_level: str) -> None:
    """Run the HTTP receiver."""
    from hookline.ingest.server import serve as run

    settings = load(config_path)
    stream = configure_logging(log_level)
    if not settings.redis_url:
        raise click.ClickException(
            f"redis.url is not set: set it in the configuration or {REDIS_URL_ENV}, "
            "or use `hookline dev` for an embedded Redis"
        )
    try:
        access_log = JsonLines(stream, log_level) if stream is not None else None
        run(settings, host=host, port=port, access_log=access_log)
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the address is taken or not ours to bind
        where = f"{host or settings.server.host}:{settings.server.port if port is None else port}"
        raise click.ClickException(f"cannot listen on {where}: {exc}") from None


@main.command()
@config_option
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

    settings = load(config_path or (None if os.environ.get(CONFIG_ENV) else str(DEV_CONFIG)))
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
        status, answer = asyncio.run(post(request))
    except (HooklineError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach {url or 'the receiver'}: {exc}") from None
    click.echo(f"POST {request.url} -> {status}")
    click.echo(answer.decode(errors="replace"))
    if status >= 400:
        sys.exit(1)


def _command_name() -> str:
    """How to call this same ``hookline`` from a shell (a venv's script may not be on PATH)."""
    script = Path(sys.executable).with_name("hookline")
    found = shutil.which("hookline")
    if found and Path(found).resolve() == script.resolve():
        return "hookline"
    return str(script) if script.exists() else "hookline"


def _queues(value: tuple[str, ...]) -> list[str]:
    return [q.strip() for item in value for q in item.split(",") if q.strip()]


@main.command()
@config_option
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
@click.option("--log-level", default="info", show_default=True)
def work(
    config_path: str | None,
    queues: tuple[str, ...],
    processes: int | None,
    burst: bool,
    log_level: str,
) -> None:
    """Run worker processes under a supervisor that restarts any that die."""
    from hookline.workers.handlers import load_router
    from hookline.workers.supervisor import Supervisor

    settings = load(config_path)
    configure_logging(log_level)
    if not settings.redis_url:
        raise click.ClickException(
            f"redis.url is not set: set it in the configuration or {REDIS_URL_ENV}"
        )
    if os.getcwd() not in sys.path:  # handler modules are found from here, as with `rq worker`
        sys.path.insert(0, os.getcwd())
    try:
        load_router(settings.workers.handlers)  # fail here, once, not in every child
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None
    supervisor = Supervisor(
        settings,
        settings.redis_url,
        processes=processes or settings.workers.processes,
        queues=_queues(queues) or list(settings.workers.queues),
        burst=burst,
    )
    sys.exit(supervisor.run())


@main.command()
@config_option
@click.option(
    "--data-dir",
    default=".hookline",
    show_default=True,
    help="Where the embedded Redis keeps its append-only file.",
)
@click.option("--port", type=int, help="Receiver port (default: server.port).")
def dev(config_path: str | None, data_dir: str, port: int | None) -> None:
    """Run the whole pipeline locally: embedded Redis (unless configured), receiver, worker."""
    from hookline.redis.embedded import EmbeddedRedis

    path = config_path or str(DEV_CONFIG)
    settings = load(path)
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        # absolute: redis-server enters --dir before opening its relative --logfile
        embedded = EmbeddedRedis(Path(data_dir).resolve() / "redis")
        try:
            embedded.start()
        except HooklineError as exc:
            raise click.ClickException(str(exc)) from None
        url = embedded.url
    env = {**os.environ, CONFIG_ENV: path, REDIS_URL_ENV: url}
    exe = [sys.executable, "-m", "hookline"]
    serve_cmd = [*exe, "serve"] + (["--port", str(port)] if port is not None else [])
    children = [
        subprocess.Popen(serve_cmd, env=env),  # noqa: S603 -- our own command
        subprocess.Popen([*exe, "work"], env=env),  # noqa: S603 -- our own command
    ]
    bind_port = port or settings.server.port
    source = next(iter(settings.sources), "SOURCE")
    click.echo(
        f"hookline dev: Redis at {url}{' (embedded)' if embedded else ''}, "
        f"receiver on http://127.0.0.1:{bind_port}/hooks/{{source}}\n"
        f"Send a first event from another terminal:\n"
        f"  {_command_name()} send {source}"
        + (f" --config {config_path}" if config_path else "")
        + (f" --url http://127.0.0.1:{bind_port}/hooks/{source}" if port else "")
        + "\nCtrl-C stops everything."
    )
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded is not None:
            embedded.stop()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    if failed:
        raise click.ClickException(f"a process exited with an error: {failed[0].args!r}")


@main.command()
@config_option
def check(config_path: str | None) -> None:
    """Check the configuration, each source and Redis; exit 1 on any error.

    Warnings (Redis settings that can lose events) are printed but do not fail.
    """
    from hookline.cli.check import has_errors, render, run_checks

    findings = run_checks(config_path, os.environ)
    click.echo(render(findings))
    if has_errors(findings):
        sys.exit(1)


from hookline.console.command import console  # noqa: E402 -- a command kept in its own package

main.add_command(console)

from hookline.cli.dlq import dlq  # noqa: E402 -- registered last, after the group exists

main.add_command(dlq)

from hookline.cli.keygen import keygen  # noqa: E402 -- a command kept in its own module

main.add_command(keygen)
