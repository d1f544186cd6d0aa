"""Typed configuration shared by the receiver and the workers."""

from hookline.config.settings import (
    MetricsSettings,
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
    "MetricsSettings",
    "RetryPolicy",
    "Secret",
    "ServerSettings",
    "Settings",
    "SourceSettings",
    "WorkerSettings",
    "load_settings",
    "parse_duration",
]
