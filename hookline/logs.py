"""Structured logging: JSON lines (structlog rendering with orjson), or a console format."""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, BinaryIO, TextIO

import orjson
import structlog

from hookline.envelope import utf8_text

#: Widest integer JSON lines carry as a number (orjson's limit); wider ones become text.
_MAX_INT = 2**64 - 1


class LoopBatchedStream:
    """A byte stream that writes what one event-loop iteration logged in one system call.

    structlog flushes after every line; a write system call per line costs the receiver
    more than rendering the line. Inside a running event loop, lines are gathered and
    written at the end of the current iteration (no timer: nothing waits on a quiet
    process); outside one, and at exit, they are written at once.
    """

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self._pending: list[bytes] = []
        self._scheduled = False
        self._lock = threading.Lock()  # threads without a loop (executors) log here too
        atexit.register(self._write_out)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the end of this loop iteration."""
        with self._lock:
            self._pending.append(data)

    def flush(self) -> None:
        """Write at the end of this loop iteration, or now when no loop runs."""
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_out()
            return
        self._scheduled = True
        loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        with self._lock:
            self._scheduled = False
            data, self._pending = b"".join(self._pending), []
            if data:
                self._target.write(data)
                self._target.flush()


def _loggable(value: Any) -> Any:
    """``value`` reduced to what orjson always encodes: escaped text, numbers, lists, dicts."""
    if isinstance(value, str):
        return utf8_text(value)
    if value is None or isinstance(value, bool | float | datetime):
        return value
    if isinstance(value, int):
        return value if -_MAX_INT <= value <= _MAX_INT else str(value)
    if isinstance(value, dict):
        return {utf8_text(str(key)): _loggable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_loggable(item) for item in value]
    return utf8_text(repr(value))


def dumps(value: Any, **options: Any) -> bytes:
    """orjson's ``dumps`` that never raises on a log line's odd values.

    A string with lone surrogates (header bytes that were not UTF-8), an integer wider
    than 64 bits or an object orjson does not know is written in a sanitised form: a
    log line must never fail the request it describes.
    """
    try:
        return orjson.dumps(value, **options)
    except TypeError:  # orjson.JSONEncodeError
        return orjson.dumps(_loggable(value), **options)


#: What a log method of :data:`AccessLog` takes: a level name and the line's fields.
LogLine = Callable[[str, dict[str, object]], None]


def structlog_lines(name: str) -> LogLine:
    """Access lines through structlog (the default; ``capture_logs`` sees them)."""
    log = structlog.get_logger(name)

    def emit(level: str, fields: dict[str, object]) -> None:
        getattr(log, level)(fields.pop("event"), **fields)

    return emit


class JsonLines:
    """Access lines rendered straight to JSON: the same shape as structlog's, a third the cost.

    The receiver writes one line per request; structlog's processor chain costs about
    three times what rendering the line with orjson does, and this is the hot path.
    """

    def __init__(self, stream: LoopBatchedStream, level: str = "info") -> None:
        self._stream = stream
        self._lowest = logging.getLevelName(level.upper())
        self._passes: dict[str, bool] = {}

    def __call__(self, level: str, fields: dict[str, object]) -> None:
        """Write one line with ``fields`` plus level and UTC timestamp, if the level passes."""
        passes = self._passes.get(level)
        if passes is None:
            passes = self._passes[level] = logging.getLevelName(level.upper()) >= self._lowest
        if not passes:
            return
        fields["level"] = level
        fields["timestamp"] = datetime.now(UTC)  # orjson writes it as structlog's ISO text
        self._stream.write(dumps(fields, option=_LINE))
        self._stream.flush()


class RateLimited:
    """At most ``burst`` lines a second through ``line``; the rest are counted, and the
    next line written says how many were left out (``suppressed``).

    A flood of refused requests (a scan, a misconfigured sender, an attack) must not
    become a flood of log lines: that costs the receiver CPU and drowns what matters.
    """

    __slots__ = ("_burst", "_clock", "_line", "_second", "_suppressed", "_written")

    def __init__(
        self, line: LogLine, burst: int = 20, clock: Callable[[], float] | None = None
    ) -> None:
        self._line = line
        self._burst = burst
        self._clock = clock or time.monotonic
        self._second = 0
        self._written = 0
        self._suppressed = 0

    def __call__(self, level: str, fields: dict[str, object]) -> None:
        """Write ``fields`` at ``level`` unless this second's lines are used up."""
        second = int(self._clock())
        if second != self._second:
            self._second, self._written = second, 0
        if self._written >= self._burst:
            self._suppressed += 1
            return
        self._written += 1
        if self._suppressed:
            fields["suppressed"] = self._suppressed
            self._suppressed = 0
        self._line(level, fields)


#: orjson options of an access line: UTC as ``Z``, a newline after it.
_LINE = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE


#: What ``--log-format`` takes: ``auto`` is ``console`` on a terminal, else ``json``.
LOG_FORMATS = ("auto", "console", "json")


def resolve_format(fmt: str, stream: TextIO | None = None) -> str:
    """``console`` or ``json``: ``auto`` becomes ``console`` when ``stream`` (stderr) is a
    terminal, ``json`` otherwise (a file, a pipe, a log collector)."""
    if fmt != "auto":
        return fmt
    target = sys.stderr if stream is None else stream
    try:
        return "console" if target.isatty() else "json"
    except ValueError:  # a closed stream
        return "json"


def configure_logging(level: str = "info", fmt: str = "json") -> LoopBatchedStream | None:
    """Send structlog output to stderr, as JSON lines or in a readable console format.

    Args:
        level: the lowest level logged.
        fmt: ``json`` (one object a line, for machines), ``console`` (structlog's
            coloured renderer, for a person at a terminal) or ``auto`` (see
            :func:`resolve_format`).

    Returns:
        the stream JSON lines go to (for :class:`JsonLines`), or ``None`` for console output.
    """
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    stream: LoopBatchedStream | None = None
    factory: structlog.typing.WrappedLogger
    if resolve_format(fmt) == "json":
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=dumps),
        ]
        stream = LoopBatchedStream(sys.stderr.buffer)
        # BytesLoggerFactory is annotated for a file object; it only calls write and flush.
        factory = structlog.BytesLoggerFactory(stream)  # type: ignore[arg-type]
    else:
        # The console renderer formats exceptions itself (format_exc_info would pre-empt it).
        processors.append(structlog.dev.ConsoleRenderer())
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    return stream
