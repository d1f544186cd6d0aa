"""``hookline dev``: the whole pipeline on this machine, and where the other commands find it.

It runs an embedded Redis (unless one is configured), the receiver, a worker and the web
console as child processes, each from the same configuration file,
``.hookline/dev.toml``: the user's configuration (or the packaged demo one) plus what
``dev`` chose, the Redis URL, the ports and a fresh console token. The other commands
run in this directory find that file (:mod:`hookline.cli.options`). One ``hookline dev``
runs per directory (a lock held while it runs); the file is removed when it stops.
The ports and the file are :mod:`hookline.cli.dev_config`'s.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hookline.cli.dev_config import Plan, Port, dev_settings, plan_ports, write_dev_config
from hookline.cli.options import (
    DEV_CONFIG,
    DEV_CONFIG_FILE,
    config_option,
    dev_lock,
    load,
    lock_holder,
    log_format_option,
)
from hookline.config.settings import CONFIG_ENV, CONSOLE_TOKEN_ENV, REDIS_URL_ENV
from hookline.errors import HooklineError
from hookline.logs import resolve_format
from hookline.redis.connection import mask_url
from hookline.redis.embedded import EmbeddedRedis

if TYPE_CHECKING:  # the schema (and pydantic) load with the first configuration, not --help
    from hookline.config.settings import Settings

#: Seconds the receiver and the console get to start answering.
START_TIMEOUT = 30.0
#: Seconds between two looks at the child processes.
POLL_INTERVAL = 0.2


def _answers(port: Port, path: str) -> bool:
    host = "127.0.0.1" if port.host in ("0.0.0.0", "::", "") else port.host  # noqa: S104 -- a wildcard, not a bind
    conn = http.client.HTTPConnection(host, port.number, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


class Children:
    """The receiver, the worker and the console, as processes ``dev`` started."""

    def __init__(self, config: Path, log_format: str, env: dict[str, str]) -> None:
        exe = [sys.executable, "-m", "hookline"]
        common = ["--config", str(config), "--log-format", log_format]
        # Each in a process group of its own: a Ctrl-C at the terminal reaches dev alone,
        # which stops them one by one, then Redis, so none sees Redis vanish as it stops.
        self.procs = {
            name: subprocess.Popen([*exe, command, *common], env=env, process_group=0)  # noqa: S603 -- our own command
            for name, command in (("receiver", "serve"), ("worker", "work"), ("console", "console"))
        }

    def exited(self) -> tuple[str, int] | None:
        """The first child that has exited, with its status, or ``None``."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def wait_serving(self, checks: list[tuple[Port, str]], timeout: float) -> None:
        """Return once every ``(port, path)`` answers.

        Raises:
            click.ClickException: when a child exits first, or nothing answers in time.
        """
        deadline = time.monotonic() + timeout
        pending = list(checks)
        while pending:
            gone = self.exited()
            if gone is not None:
                raise click.ClickException(f"the {gone[0]} exited with status {gone[1]} at start")
            pending = [(port, path) for port, path in pending if not _answers(port, path)]
            if pending and time.monotonic() > deadline:
                port = pending[0][0]
                raise click.ClickException(f"nothing answered on port {port.number} in {timeout} s")
            time.sleep(0.05 if pending else 0)

    def stop(self) -> list[str]:
        """SIGTERM every child still running, wait (SIGKILL after 30 s); the ones that failed."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        ok = (0, -signal.SIGTERM, -signal.SIGINT)
        return [name for name, proc in self.procs.items() if proc.returncode not in ok]


def _command_name() -> str:
    """How to call this same ``hookline`` from a shell (a venv's script may not be on PATH)."""
    script = Path(sys.executable).with_name("hookline")
    found = shutil.which("hookline")
    if found and Path(found).resolve() == script.resolve():
        return "hookline"
    return str(script) if script.exists() else "hookline"


def _url(port: Port, path: str = "") -> str:
    host = "127.0.0.1" if port.host in ("0.0.0.0", "::", "") else port.host  # noqa: S104 -- a wildcard, not a bind
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port.number}{path}"


def send_example(settings: Settings, routes: list[tuple[str, str, str]]) -> str:
    """``send SOURCE [--type TYPE]`` for an event a configured handler takes, if one does."""
    for source, event_type, _ in routes:
        if source in settings.sources and event_type != "*":
            return f"send {source} --type {event_type}"
    routed = [s for s, _, _ in routes if s in settings.sources]
    return f"send {next(iter(routed or sorted(settings.sources)), 'SOURCE')}"


def banner(
    settings: Settings, plan: Plan, redis_url: str, embedded: bool, config: Path, login: str
) -> str:
    """What ``dev`` prints once everything answers."""
    metrics = [
        f"{_url(p, '/metrics')} ({what})"
        for p, what in ((plan.receiver_metrics, "receiver"), (plan.worker_metrics, "workers"))
        if p is not None
    ]
    handlers = ", ".join(settings.workers.handlers) or "none (every event is unhandled)"
    lines = [
        "hookline dev is running:",
        f"  configuration  {config.resolve()}",
        f"  Redis          {mask_url(redis_url)}" + (" (embedded)" if embedded else ""),
        f"  receiver       {_url(plan.receiver, '/hooks/{source}')}"
        f"  sources: {', '.join(sorted(settings.sources)) or 'none'}",
        f"  worker         handlers: {handlers}",
        f"  metrics        {', '.join(metrics) or 'off'}",
        f"  console        {_url(plan.console, '/login?link=' + login)}",
        "                 (a one-time login link; the token is console.token in the file above)",
        "",
        "In another terminal, in this directory (no --config needed: they use the file above):",
        f"  {_command_name()} {plan.send_example}    # sign and POST a sample event",
        f"  {_command_name()} dlq list    # what failed for good, and why",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


@click.command()
@config_option(
    help_text="Your configuration (TOML); Redis is embedded unless it sets redis.url. "
    "Default: a demo configuration with one source, `demo`."
)
@click.option(
    "--data-dir",
    default=".hookline",
    show_default=True,
    help="Where the embedded Redis keeps its append-only file.",
)
@click.option(
    "--port", type=int, help="Receiver port (default: server.port, else 8080 or a free one)."
)
@log_format_option
def dev(config_path: str | None, data_dir: str, port: int | None, log_format: str) -> None:
    """Run the whole pipeline locally: embedded Redis (unless configured), receiver, worker
    and web console; write the configuration they run with to .hookline/dev.toml."""
    from hookline.workers.handlers import load_router

    here = Path.cwd()
    with dev_lock(here) as free:
        if not free:
            raise click.ClickException(
                f"another `hookline dev` is running in this directory (pid {lock_holder(here)}): "
                "stop it first, or start this one in another directory"
            )
        settings = load(config_path or str(DEV_CONFIG))
        origin = config_path or "the demo configuration"
        # load() has read and validated it: this cannot fail now.
        raw = tomllib.loads(Path(config_path or DEV_CONFIG).read_text(encoding="utf-8"))
        if str(here) not in sys.path:  # handler modules are found from here, as the worker does
            sys.path.insert(0, str(here))
        try:
            router = load_router(settings.workers.handlers)  # one line now, not a dead worker
            plan = plan_ports(raw, settings, config_path, port)
            plan = replace(plan, send_example=send_example(settings, router.routes()))
        except HooklineError as exc:
            raise click.ClickException(str(exc)) from None
        _run(settings, raw, origin, plan, Path(data_dir), resolve_format(log_format))


#: Signals that stop ``dev`` cleanly: Ctrl-C, ``kill``, the terminal closing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(
    settings: Settings,
    raw: dict[str, Any],
    origin: str,
    plan: Plan,
    data_dir: Path,
    log_format: str,
) -> None:
    """Start everything, print where it is, and wait for Ctrl-C or a child's death."""
    from hookline.console.security import login_link_code

    for signum in STOP_SIGNALS:
        signal.signal(signum, _interrupt)
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(data_dir.resolve() / "redis", own_group=True)
        try:
            embedded.start()
        except HooklineError as exc:
            raise click.ClickException(str(exc)) from None
        url = embedded.url
    token = secrets.token_urlsafe(32)
    config = DEV_CONFIG_FILE.resolve()
    children: Children | None = None
    stopped: tuple[str, int] | None = None
    try:
        write_dev_config(config, dev_settings(raw, url, plan, token), origin)
        env = {**os.environ, CONFIG_ENV: str(config), REDIS_URL_ENV: url}
        env.pop(CONSOLE_TOKEN_ENV, None)  # the generated token, in the file, is the console's
        children = Children(config, log_format, env)
        children.wait_serving(
            [(plan.receiver, "/healthz"), (plan.console, "/login")], START_TIMEOUT
        )
        login = login_link_code(token)
        click.echo(banner(settings, plan, url, embedded is not None, config, login))
        while (stopped := children.exited()) is None:
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        pass
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        failed = children.stop() if children is not None else []
        if embedded is not None:
            embedded.stop()
        config.unlink(missing_ok=True)
    if stopped is not None:
        name, code = stopped
        raise click.ClickException(f"the {name} stopped (status {code}), so everything did")
    if failed:
        raise click.ClickException(f"the {failed[0]} exited with an error")
