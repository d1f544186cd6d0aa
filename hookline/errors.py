"""The one exception hierarchy of hookline."""

from __future__ import annotations


class HooklineError(Exception):
    """Base class of every error hookline raises on purpose."""


class ConfigError(HooklineError):
    """Raised when the configuration is invalid; the message names the key and the fix."""


class VerificationError(HooklineError):
    """Raised when a request's signature is missing or does not match any secret."""


class TimestampError(VerificationError):
    """Raised when a signed timestamp is missing, malformed or outside the tolerance."""


class ExtractionError(HooklineError):
    """Raised when the event id or type cannot be read from a verified request."""


class BackpressureError(HooklineError):
    """Raised when a target queue is deeper than its configured maximum."""


class EmbeddedRedisError(HooklineError):
    """Raised when no redis-server binary can be found or started for the embedded default."""


class PermanentError(HooklineError):
    """Raised by a handler when retrying cannot help: the event is dead-lettered at once."""


class HandlerTimeout(HooklineError):
    """Raised inside a handler that ran past the configured handler timeout."""


class HandlerLoadError(HooklineError):
    """Raised when a configured handler module cannot be imported or registers nothing."""


class DeadLetterError(HooklineError):
    """Raised when a dead-letter operation names an entry that does not exist."""
