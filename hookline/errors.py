"""The one exception hierarchy of hookline: every error it raises on purpose is here.

Grouped by where it is raised, in the order an event travels.
"""

from __future__ import annotations

import errno


class HooklineError(Exception):
    """Base class of every error hookline raises on purpose."""


# -- configuration ----------------------------------------------------------------------


class ConfigError(HooklineError):
    """Raised when the configuration is invalid; the message names the key and the fix."""


class RedisUrlError(ConfigError):
    """Raised when a Redis URL cannot be read; the message shows it only masked."""


# -- the receiver (hookline.ingest) -----------------------------------------------------


class BodyTooLargeError(HooklineError):
    """Raised when a request body is over its source's ``max_body`` (answered 413)."""


class BodyBudgetError(HooklineError):
    """Raised when the receiver's body budget (``server.max_buffered``) is full (503)."""


class VerificationError(HooklineError):
    """Raised when a request's signature is missing or does not match any secret."""


class TimestampError(VerificationError):
    """Raised when a signed timestamp is missing, malformed or outside the tolerance."""


class ExtractionError(HooklineError):
    """Raised when the event id or type cannot be read from a verified request."""


# -- listening: the receiver, the console, the metrics (hookline.listen) -------------


class ListenError(HooklineError):
    """Raised when a server cannot bind its port; the message names the key that set it."""

    @classmethod
    def from_os_error(cls, exc: OSError, host: str, port: int, key: str) -> ListenError:
        """The error for ``exc``, raised binding ``host:port``, whose port ``key`` set."""
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            return cls(
                f"port {port} ({key}) is already in use on {host}: stop what listens there "
                f"or choose another port"
            )
        if exc.errno == errno.EACCES:
            return cls(
                f"cannot listen on {shown} ({key}): permission denied; use a port above 1023"
            )
        reason = exc.strerror or str(exc)
        return cls(f"cannot listen on {shown} ({key}): {reason}")


# -- the envelope and Redis (hookline.envelope, hookline.redis) -------------------------


class EnvelopeError(HooklineError):
    """Raised when stored data is not a valid envelope."""


class ReplicationError(HooklineError):
    """Raised when fewer replicas than required confirmed a commit in time."""


class RedisModeError(HooklineError):
    """Raised when redis.url names one node of a Redis Cluster (a plain URL cannot use it)."""


class EmbeddedRedisError(HooklineError):
    """Raised when no redis-server binary can be found or started for the embedded default."""


# -- handlers and workers (hookline.workers) --------------------------------------------


class PermanentError(HooklineError):
    """Raised by a handler when retrying cannot help: the event is dead-lettered at once."""


class HandlerTimeout(HooklineError):
    """Raised inside a handler that ran past the configured handler timeout."""


class HandlerLoadError(HooklineError):
    """Raised when a configured handler module cannot be imported or registers nothing."""


# -- dead letters and their surfaces (hookline.dlq, hookline.cli, hookline.console) -----


class DeadLetterError(HooklineError):
    """Raised when a dead-letter operation names an entry that does not exist."""


class FilterError(HooklineError):
    """Raised when a dead-letter filter cannot be understood; the message says what to type."""


class ExportFileError(HooklineError):
    """Raised when a file given to re-inject is not an export of dead letters."""


class ActionError(HooklineError):
    """Raised when a console action's form cannot be acted on; the message says why."""


class BusyError(HooklineError):
    """Raised when the console already runs as many replays and purges as it allows."""
