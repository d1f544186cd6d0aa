"""Load, validate and type hookline's configuration.

One TOML file (``--config`` or ``HOOKLINE_CONFIG``), a few environment overrides,
validated once at start-up. Every problem is reported with the key it concerns and
what to do about it, all at once rather than one per restart.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from hookline.errors import ConfigError

#: Environment variable naming the configuration file.
CONFIG_ENV = "HOOKLINE_CONFIG"
#: Environment variable overriding ``redis.url``.
REDIS_URL_ENV = "HOOKLINE_REDIS_URL"
#: Default dedupe window: Stripe retries for up to 3 days.
DEFAULT_DEDUPE_WINDOW = 3 * 86400.0
#: Default replay tolerance for timestamped schemes (providers' reference value).
DEFAULT_TOLERANCE = 300.0
#: Default body size limit; GitHub can send up to 25 MB, raise it per source if needed.
DEFAULT_MAX_BODY = 1024 * 1024
#: Default backpressure threshold, in jobs waiting in the target queue.
DEFAULT_MAX_QUEUE_DEPTH = 100_000
#: Default queue name.
DEFAULT_QUEUE = "hookline"
#: Default keep-alive timeout: aiohttp's and nginx's, above the 60 s idle timeout of AWS
#: load balancers and of nginx's upstream connections.
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
#: Default bound on the request bodies the receiver holds at once, across all requests.
DEFAULT_MAX_BUFFERED = 64 * 1024 * 1024

SCHEMES = ("standard-webhooks", "svix", "stripe", "github", "shopify", "slack", "hmac")
#: Signature encodings and hash algorithms the ``hmac`` scheme accepts.
HMAC_ENCODINGS = ("hex", "base64")
HMAC_ALGORITHMS = ("sha1", "sha256", "sha512")
#: URL schemes redis-py connects with.
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LOCATOR = re.compile(r"^(header|body):.+$")


def parse_duration(value: object) -> float:
    """Parse seconds (a number) or a string such as ``"300ms"``, ``"5m"``, ``"3d"``.

    Raises:
        ValueError: when the value is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30, '5m' or '3d', got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):  # TOML has nan and inf; a nan tolerance accepts any age
            raise ValueError(f"expected a duration such as 30, '5m' or '3d', got {value!r}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 30, '5m' or '3d', got {value!r}")


class Secret:
    """A secret string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        """The secret itself; call only where it is used for signing or verifying."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>, from {self.origin})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base*2**n))."""

    max_attempts: int = 20
    base_delay: float = 1.0
    max_delay: float = 3600.0


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """One webhook source: a URL path segment, a signature scheme and where events go."""

    name: str
    scheme: str
    secrets: tuple[Secret, ...]
    tolerance: float = DEFAULT_TOLERANCE
    id_from: tuple[str, ...] = ()
    type_from: tuple[str, ...] = ()
    queue: str = DEFAULT_QUEUE
    max_body: int = DEFAULT_MAX_BODY
    max_queue_depth: int = DEFAULT_MAX_QUEUE_DEPTH
    dedupe_window: float = DEFAULT_DEDUPE_WINDOW
    keep_headers: tuple[str, ...] = ()
    signature_header: str | None = None
    signature_prefix: str = ""
    signature_encoding: str = "hex"
    signature_algorithm: str = "sha256"
    retry: RetryPolicy | None = None
    unhandled: Literal["ignore", "dead-letter"] = "ignore"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where the receiver listens and how it commits to Redis."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: Longest a request waits for others to share its Redis round trip.
    commit_delay: float = 0.0
    #: Most events committed in one round trip.
    commit_batch: int = 256
    #: Seconds a provider is told to wait after a 503.
    retry_after: int = 5
    #: Replicas that must confirm a write (Redis WAIT) before a 2xx; 0 to skip.
    wait_replicas: int = 0
    wait_timeout: float = 0.5
    #: After SIGTERM, seconds /readyz answers 503 while requests are still served, so a
    #: load balancer stops routing here before the listener closes.
    drain_delay: float = 1.0
    #: Longest a request body may take to arrive before the receiver answers 408.
    body_timeout: float = 10.0
    #: Longest a connection may go without a complete request head: from when it opens,
    #: and between requests when kept alive (aiohttp keeps one timer for both). Cuts off
    #: a client stalled in its headers; behind a load balancer it must exceed the
    #: balancer's idle timeout, or a request sent as the receiver closes gets a 502.
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    #: Bytes of request bodies held at once, across all requests (bodies are buffered
    #: before they are authenticated); a request that would go over is answered 503.
    max_buffered: int = DEFAULT_MAX_BUFFERED


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How workers find and run handlers."""

    handlers: tuple[str, ...] = ()
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    processes: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    handler_timeout: float = 30.0
    #: Dead letters are kept until removed unless this is set.
    dead_letter_retention: float | None = None


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    """The on-call web console."""

    host: str = "127.0.0.1"
    port: int = 8081
    token: Secret | None = None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Where Prometheus metrics are served; off (port 0) unless configured."""

    host: str = "127.0.0.1"
    receiver_port: int = 0
    worker_port: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration."""

    redis_url: str | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    sources: Mapping[str, SourceSettings] = field(default_factory=dict)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    path: Path | None = None

    def source_retry(self, source: str) -> RetryPolicy:
        """The retry policy that applies to ``source``."""
        src = self.sources.get(source)
        return src.retry if src is not None and src.retry is not None else self.workers.retry


T = TypeVar("T")


class _Reader:
    """Reads typed values out of nested TOML tables, collecting every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def table(self, data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.errors.append(f"{where}{key}: expected a table, got {type(value).__name__}")
            return {}
        return value

    def check_keys(self, data: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in data:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.errors.append(f"{where}{key}: unknown key; expected one of {hint}")

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        where: str,
        default: T,
        convert: Callable[[Any], T],
    ) -> T:
        if key not in data:
            return default
        try:
            return convert(data[key])
        except (TypeError, ValueError) as exc:
            self.errors.append(f"{where}{key}: {exc}")
            return default


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return convert


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return seconds


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"expected a name of letters, digits, '_', '-', '.', got {value!r}")
    return value


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return convert


def _redis_url(value: Any) -> str:
    # The value is not echoed: a Redis URL may carry a password.
    if not isinstance(value, str) or not value.startswith(REDIS_URL_SCHEMES):
        raise ValueError("expected a redis://, rediss://, unix:// or redis+sentinel:// URL")
    return value


def _locators(value: Any) -> tuple[str, ...]:
    items = _str_list(value)
    for item in items:
        if not _LOCATOR.match(item):
            raise ValueError(f"expected 'header:<name>' or 'body:<json.path>', got {item!r}")
    return tuple(i.lower() if i.startswith("header:") else i for i in items)


def _retry(r: _Reader, data: Mapping[str, Any], where: str, base: RetryPolicy) -> RetryPolicy:
    r.check_keys(data, {"max_attempts", "base_delay", "max_delay"}, where)
    policy = RetryPolicy(
        max_attempts=r.get(data, "max_attempts", where, base.max_attempts, _int(1, 1000)),
        base_delay=r.get(data, "base_delay", where, base.base_delay, parse_duration),
        max_delay=r.get(data, "max_delay", where, base.max_delay, parse_duration),
    )
    if policy.max_delay < policy.base_delay:
        r.errors.append(f"{where}max_delay: must be at least base_delay")
    return policy


_SOURCE_KEYS = {
    "scheme",
    "secrets",
    "tolerance",
    "id",
    "type",
    "queue",
    "max_body",
    "max_queue_depth",
    "dedupe_window",
    "keep_headers",
    "signature_header",
    "signature_prefix",
    "signature_encoding",
    "signature_algorithm",
    "retry",
    "unhandled",
}


def _secrets(r: _Reader, data: Mapping[str, Any], where: str) -> tuple[Secret, ...]:
    raw = data.get("secrets")
    if raw is None:
        r.errors.append(f"{where}secrets: missing; list at least one secret or {{env = NAME}}")
        return ()
    if not isinstance(raw, list) or not raw:
        r.errors.append(f"{where}secrets: empty; list at least one secret or {{env = NAME}}")
        return ()
    found: list[Secret] = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item:
            found.append(Secret(item, f"{where}secrets[{i}]"))
        elif isinstance(item, dict) and set(item) == {"env"} and isinstance(item["env"], str):
            name = item["env"]
            value = r.env.get(name)
            if value:
                found.append(Secret(value, f"{where}secrets[{i}] (${name})"))
            else:
                r.errors.append(
                    f"{where}secrets[{i}]: environment variable {name} is not set; "
                    f"export {name} or remove the entry"
                )
        else:
            r.errors.append(f"{where}secrets[{i}]: expected a string or {{env = NAME}}")
    return tuple(found)


def _source(
    r: _Reader, name: str, data: Mapping[str, Any], defaults: SourceSettings, retry: RetryPolicy
) -> SourceSettings:
    where = f"sources.{name}."
    if not _NAME.match(name):
        r.errors.append(f"sources.{name}: a source name may hold letters, digits, '_', '-', '.'")
    r.check_keys(data, _SOURCE_KEYS, where)
    scheme = data.get("scheme")
    known_scheme = True  # an unknown scheme must not draw errors about hmac's keys
    if scheme not in SCHEMES:
        r.errors.append(f"{where}scheme: expected one of {', '.join(SCHEMES)}, got {scheme!r}")
        scheme = "hmac"
        known_scheme = False
    src_retry = None
    if "retry" in data:
        src_retry = _retry(r, r.table(data, "retry", where), f"{where}retry.", retry)
    unhandled = data.get("unhandled", "ignore")
    if unhandled not in ("ignore", "dead-letter"):
        r.errors.append(f"{where}unhandled: expected 'ignore' or 'dead-letter', got {unhandled!r}")
        unhandled = "ignore"
    source = SourceSettings(
        name=name,
        scheme=scheme,
        secrets=_secrets(r, data, where),
        tolerance=r.get(data, "tolerance", where, defaults.tolerance, parse_duration),
        id_from=r.get(data, "id", where, (), _locators),
        type_from=r.get(data, "type", where, (), _locators),
        queue=r.get(data, "queue", where, defaults.queue, _name),
        max_body=r.get(data, "max_body", where, defaults.max_body, _int(1)),
        max_queue_depth=r.get(data, "max_queue_depth", where, defaults.max_queue_depth, _int(1)),
        dedupe_window=r.get(data, "dedupe_window", where, defaults.dedupe_window, parse_duration),
        keep_headers=tuple(
            h.lower() for h in r.get(data, "keep_headers", where, tuple[str, ...](), _str_list)
        ),
        signature_header=r.get(data, "signature_header", where, None, _str),
        signature_prefix=r.get(data, "signature_prefix", where, "", str),
        signature_encoding=r.get(data, "signature_encoding", where, "hex", _one_of(HMAC_ENCODINGS)),
        signature_algorithm=r.get(
            data, "signature_algorithm", where, "sha256", _one_of(HMAC_ALGORITHMS)
        ),
        retry=src_retry,
        unhandled=unhandled,
    )
    if known_scheme and scheme == "hmac" and source.signature_header is None:
        r.errors.append(
            f"{where}signature_header: required for scheme 'hmac' (for example 'X-Signature')"
        )
    return source


def _buffer_bound(
    r: _Reader,
    srv: Mapping[str, Any],
    server: ServerSettings,
    sources: Mapping[str, SourceSettings],
) -> ServerSettings:
    """``server`` with a ``max_buffered`` that can hold the largest body of any source.

    Unset, it is the default or the largest ``max_body``, whichever is more; set below the
    largest ``max_body``, it is an error: that source's largest events could never arrive.
    """
    largest = max(sources.values(), key=lambda src: src.max_body, default=None)
    if largest is None or largest.max_body <= server.max_buffered:
        return server
    if "max_buffered" in srv:
        r.errors.append(
            f"server.max_buffered: {server.max_buffered} is less than "
            f"sources.{largest.name}.max_body ({largest.max_body}); raise it to at least that"
        )
        return server
    return replace(server, max_buffered=largest.max_body)


def parse_settings(
    data: Mapping[str, Any], env: Mapping[str, str], path: Path | None = None
) -> Settings:
    """Build :class:`Settings` from parsed TOML and an environment.

    Raises:
        ConfigError: listing every problem found, each with its key.
    """
    r = _Reader(env)
    r.check_keys(
        data, {"redis", "server", "receiver", "sources", "workers", "console", "metrics"}, ""
    )

    redis = r.table(data, "redis", "")
    r.check_keys(redis, {"url"}, "redis.")
    if env.get(REDIS_URL_ENV):
        redis_url = r.get(env, REDIS_URL_ENV, "", None, _redis_url)
    else:
        redis_url = r.get(redis, "url", "redis.", None, _redis_url)

    srv = r.table(data, "server", "")
    r.check_keys(srv, {f for f in ServerSettings.__dataclass_fields__}, "server.")
    d = ServerSettings()
    server = ServerSettings(
        host=r.get(srv, "host", "server.", d.host, _str),
        port=r.get(srv, "port", "server.", d.port, _int(0, 65535)),
        commit_delay=r.get(srv, "commit_delay", "server.", d.commit_delay, parse_duration),
        commit_batch=r.get(srv, "commit_batch", "server.", d.commit_batch, _int(1, 10_000)),
        retry_after=r.get(srv, "retry_after", "server.", d.retry_after, _int(1)),
        wait_replicas=r.get(srv, "wait_replicas", "server.", d.wait_replicas, _int(0, 100)),
        wait_timeout=r.get(srv, "wait_timeout", "server.", d.wait_timeout, parse_duration),
        drain_delay=r.get(srv, "drain_delay", "server.", d.drain_delay, parse_duration),
        body_timeout=r.get(srv, "body_timeout", "server.", d.body_timeout, parse_duration),
        keepalive_timeout=r.get(
            srv, "keepalive_timeout", "server.", d.keepalive_timeout, _positive_duration
        ),
        max_buffered=r.get(srv, "max_buffered", "server.", d.max_buffered, _int(1)),
    )

    wrk = r.table(data, "workers", "")
    r.check_keys(
        wrk,
        {"handlers", "queues", "processes", "retry", "handler_timeout", "dead_letter_retention"},
        "workers.",
    )
    wd = WorkerSettings()
    retry = _retry(r, r.table(wrk, "retry", "workers."), "workers.retry.", wd.retry)
    retention = r.get(wrk, "dead_letter_retention", "workers.", None, parse_duration)
    workers = WorkerSettings(
        handlers=r.get(wrk, "handlers", "workers.", wd.handlers, _str_list),
        queues=r.get(wrk, "queues", "workers.", wd.queues, _str_list),
        processes=r.get(wrk, "processes", "workers.", wd.processes, _int(1, 256)),
        retry=retry,
        handler_timeout=r.get(
            wrk, "handler_timeout", "workers.", wd.handler_timeout, parse_duration
        ),
        dead_letter_retention=retention,
    )

    rcv = r.table(data, "receiver", "")
    r.check_keys(
        rcv, {"tolerance", "queue", "max_body", "max_queue_depth", "dedupe_window"}, "receiver."
    )
    base = SourceSettings(name="", scheme="hmac", secrets=())
    defaults = SourceSettings(
        name="",
        scheme="hmac",
        secrets=(),
        tolerance=r.get(rcv, "tolerance", "receiver.", base.tolerance, parse_duration),
        queue=r.get(rcv, "queue", "receiver.", base.queue, _name),
        max_body=r.get(rcv, "max_body", "receiver.", base.max_body, _int(1)),
        max_queue_depth=r.get(rcv, "max_queue_depth", "receiver.", base.max_queue_depth, _int(1)),
        dedupe_window=r.get(rcv, "dedupe_window", "receiver.", base.dedupe_window, parse_duration),
    )
    sources = {
        name: _source(
            r, name, r.table(r.table(data, "sources", ""), name, "sources."), defaults, retry
        )
        for name in r.table(data, "sources", "")
    }

    server = _buffer_bound(r, srv, server, sources)

    con = r.table(data, "console", "")
    r.check_keys(con, {"host", "port", "token"}, "console.")
    cd = ConsoleSettings()
    token_raw = env.get("HOOKLINE_CONSOLE_TOKEN") or r.get(con, "token", "console.", None, _str)
    console = ConsoleSettings(
        host=r.get(con, "host", "console.", cd.host, _str),
        port=r.get(con, "port", "console.", cd.port, _int(0, 65535)),
        token=Secret(token_raw, "console.token") if token_raw else None,
    )

    met = r.table(data, "metrics", "")
    r.check_keys(met, {"host", "receiver_port", "worker_port"}, "metrics.")
    md = MetricsSettings()
    metrics = MetricsSettings(
        host=r.get(met, "host", "metrics.", md.host, _str),
        receiver_port=r.get(met, "receiver_port", "metrics.", md.receiver_port, _int(0, 65535)),
        worker_port=r.get(met, "worker_port", "metrics.", md.worker_port, _int(0, 65535)),
    )

    if r.errors:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{where}:\n  " + "\n  ".join(r.errors))
    return Settings(
        redis_url=redis_url,
        server=server,
        sources=sources,
        workers=workers,
        console=console,
        metrics=metrics,
        path=path,
    )


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
