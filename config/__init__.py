"""Typed configuration shared by the receiver and the workers."""

from config.settings import (
    RetryPolicy,
    Secret,
    ServerSettings,
    Settings,
    SourceSettings,
    WorkerSettings,
    load_settings,
    parse_duration,
)

__all__ = [
    "RetryPolicy",
    "Secret",
    "ServerSettings",
    "Settings",
    "SourceSettings",
    "WorkerSettings",
    "load_settings",
    "parse_duration",
]
