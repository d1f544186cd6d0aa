"""Typed configuration shared by the receiver and the workers.

:mod:`~hookline.config.settings` loads and validates a file;
:mod:`~hookline.config.schema` declares every key once (type, default, bounds, meaning);
:mod:`~hookline.config.values` reads each kind of value (durations, secrets, locators);
:mod:`~hookline.config.messages` words the problems found;
:mod:`~hookline.config.defaults` holds the environment variables and shared defaults.
The schema's classes (and pydantic) are imported on first use.
"""

from typing import TYPE_CHECKING

from hookline.config import settings
from hookline.config.settings import (
    CONFIG_ENV,
    CONSOLE_TOKEN_ENV,
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_QUEUE_DEPTH,
    DEFAULT_QUEUE,
    DEFAULT_TOLERANCE,
    REDIS_URL_ENV,
    Secret,
    load_settings,
    parse_duration,
    parse_settings,
)

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
else:
    __getattr__ = settings.__getattr__  # the schema's classes, loaded on first use

__all__ = [
    "CONFIG_ENV",
    "CONSOLE_TOKEN_ENV",
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_QUEUE_DEPTH",
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
