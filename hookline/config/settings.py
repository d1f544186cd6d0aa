"""Load, validate and type hookline's configuration.

One TOML file (``--config`` or ``HOOKLINE_CONFIG``), two environment overrides
(``HOOKLINE_REDIS_URL``, ``HOOKLINE_CONSOLE_TOKEN``), validated once at start-up against
:mod:`hookline.config.schema`. Every problem is reported with the key it concerns and
what to do about it, all at once rather than one per restart. The schema's types and
constants are importable from here too, as the rest of hookline does.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookline.config.defaults import (
    CONFIG_ENV,
    CONSOLE_TOKEN_ENV,
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_QUEUE_DEPTH,
    DEFAULT_MIN_BODY_RATE,
    DEFAULT_QUEUE,
    DEFAULT_TOLERANCE,
    REDIS_URL_ENV,
)
from hookline.config.values import Secret, parse_duration
from hookline.errors import ConfigError

if TYPE_CHECKING:
    from hookline.config.schema import (
        ConsoleSettings,
        MetricsSettings,
        RedisSettings,
        RetryPolicy,
        ServerSettings,
        Settings,
        SourceDefaults,
        SourceSettings,
        WorkerSettings,
    )

__all__ = [
    "CONFIG_ENV",
    "CONSOLE_TOKEN_ENV",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_QUEUE_DEPTH",
    "DEFAULT_MIN_BODY_RATE",
    "DEFAULT_QUEUE",
    "DEFAULT_TOLERANCE",
    "REDIS_URL_ENV",
    "ConsoleSettings",
    "MetricsSettings",
    "RedisSettings",
    "RetryPolicy",
    "Secret",
    "ServerSettings",
    "Settings",
    "SourceDefaults",
    "SourceSettings",
    "WorkerSettings",
    "load_settings",
    "parse_duration",
    "parse_settings",
]

#: The keys an environment variable overrides, and the variable.
_OVERRIDES = {("redis", "url"): REDIS_URL_ENV, ("console", "token"): CONSOLE_TOKEN_ENV}


if not TYPE_CHECKING:  # mypy reads the imports above, and so checks every name

    def __getattr__(name: str) -> object:
        """The schema's names, imported (with pydantic) on first use: ``hookline --help``
        and the modules that only need a constant or :func:`parse_duration` skip both."""
        if name in __all__:
            from hookline.config import schema

            return getattr(schema, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_settings(
    data: Mapping[str, Any], env: Mapping[str, str], path: Path | None = None
) -> Settings:
    """Build :class:`Settings` from parsed TOML and an environment.

    Args:
        data: the parsed file.
        env: where ``{ env = NAME }`` secrets and the overrides are read from.
        path: the file ``data`` was read from, named in the error.

    Raises:
        ConfigError: listing every problem found, each with its key.
    """
    from pydantic import ValidationError

    from hookline.config.messages import problems
    from hookline.config.schema import Settings

    data, renames = _override(data, env)
    try:
        settings = Settings.model_validate(data, context={"env": env})
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        lines = problems(exc, data, renames)
        raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(lines)) from None
    return settings.model_copy(update={"path": path})


def _override(
    data: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """``data`` with the keys set by environment variables, and those keys' variables."""
    result, renames = dict(data), {}
    for (table, key), variable in _OVERRIDES.items():
        value, section = env.get(variable), result.get(table, {})
        if value and isinstance(section, dict):  # a table that is not one is reported as such
            result[table] = {**section, key: value}
            renames[(table, key)] = variable
    return result, renames


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load the configuration file named by ``path`` or ``$HOOKLINE_CONFIG``.

    Raises:
        ConfigError: when the file cannot be read or parsed, or is invalid.
    """
    env = os.environ if env is None else env
    chosen = path or env.get(CONFIG_ENV)
    if not chosen:
        raise ConfigError(f"no configuration file: pass --config FILE or set {CONFIG_ENV}")
    file = Path(chosen)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {file}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from None
    return parse_settings(data, env, file)
