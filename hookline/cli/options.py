"""Options the ``hookline`` commands share, and where they find a configuration.

A command names its configuration with ``--config FILE`` or ``$HOOKLINE_CONFIG``. Where
neither is given, the operator commands (``dlq``, ``console``, ``check``, ``send``) use
the configuration a ``hookline dev`` in the current directory runs with,
``.hookline/dev.toml``, and say so on stderr: after ``hookline dev``, a second terminal in
the same directory needs no flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from hookline.config.settings import CONFIG_ENV, load_settings
from hookline.errors import HooklineError
from hookline.logs import LOG_FORMATS

if TYPE_CHECKING:  # the schema (and pydantic) load with the first configuration, not --help
    from hookline.config.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

#: The configuration ``hookline dev`` (and ``hookline send``) use when none is given.
DEV_CONFIG = Path(__file__).resolve().parent.parent / "config" / "dev.toml"
#: Where ``hookline dev`` keeps its state, relative to the directory it runs in.
DEV_DIR = Path(".hookline")
#: The configuration ``hookline dev`` runs with (embedded Redis URL, ports, console token).
DEV_CONFIG_FILE = DEV_DIR / "dev.toml"
#: Held (``flock``) by the ``hookline dev`` running in this directory, while it runs.
DEV_LOCK_FILE = DEV_DIR / "dev.lock"

#: What to do when no configuration is given and none was found.
NO_CONFIG = (
    f"no configuration: pass --config FILE, set {CONFIG_ENV}, or start `hookline dev` "
    f"in this directory (it writes {DEV_CONFIG_FILE})"
)


def load(config_path: str | None) -> Settings:
    """Load settings or exit with the configuration error's message."""
    try:
        return load_settings(config_path)
    except HooklineError as exc:
        raise click.ClickException(str(exc)) from None


def dev_running(directory: Path | None = None) -> bool:
    """Whether a ``hookline dev`` holds the lock of ``directory`` (default: the current one)."""
    lock = (directory or Path.cwd()) / DEV_LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a shared lock taken just now
    return False


@contextlib.contextmanager
def dev_lock(directory: Path) -> Iterator[bool]:
    """Hold ``directory``'s dev lock while the block runs; yields whether it was free.

    The lock is the kernel's (``flock``): it goes with the process, however that ends,
    so a ``hookline dev`` killed with SIGKILL leaves no stale lock behind.
    """
    path = directory / DEV_LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def lock_holder(directory: Path) -> str:
    """The pid written in ``directory``'s dev lock, or ``?``."""
    try:
        text = (directory / DEV_LOCK_FILE).read_text().strip()
    except OSError:
        return "?"
    return text if text.isdigit() else "?"


def discover_config(value: str | None) -> str | None:
    """``value`` if given, else ``.hookline/dev.toml`` when it exists (said on stderr)."""
    if value:
        return value
    if not DEV_CONFIG_FILE.is_file():
        return None
    note = "" if dev_running() else "; no `hookline dev` runs here now, its Redis may be gone"
    click.echo(
        f"hookline: using {DEV_CONFIG_FILE}, written by `hookline dev` "
        f"(--config FILE for another){note}",
        err=True,
    )
    return str(DEV_CONFIG_FILE)


def _discover(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return discover_config(value)


def config_option(*, discover: bool = False, help_text: str | None = None) -> Callable[[F], F]:
    """The ``--config`` option (``$HOOKLINE_CONFIG``); with ``discover``, falling back to
    ``.hookline/dev.toml`` (see :func:`discover_config`)."""
    default_help = f"Configuration file (TOML). Default: ${CONFIG_ENV}" + (
        f", else {DEV_CONFIG_FILE} while `hookline dev` runs here." if discover else "."
    )
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        envvar=CONFIG_ENV,
        callback=_discover if discover else None,
        help=help_text or default_help,
    )


#: ``--log-format``, for the commands that run services.
log_format_option = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="auto",
    show_default=True,
    help="Log lines: readable on a terminal (console), JSON lines otherwise (json).",
)

#: ``--log-level``, for the commands that run services.
log_level_option = click.option("--log-level", default="info", show_default=True)
