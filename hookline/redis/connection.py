"""Redis connections: clients from URLs (one server or a Sentinel group), and URL masking."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.connection import parse_url
from redis.sentinel import MasterNotFoundError, Sentinel

from hookline.errors import RedisModeError, RedisUrlError

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
    """``url`` as it may be shown: everything between the scheme and the last ``@`` (user
    and password) replaced by ``***``, and so is any ``password`` in the query string.

    The one masking function for every message that shows a URL (Redis, or a receiver URL
    with credentials). It does not parse: a password holding an unencoded ``#``, ``?``,
    ``/`` or ``@`` (which a URL parser splits wrongly) is masked whole all the same.
    """
    scheme, sep, rest = url.partition("://")
    _, at, host = rest.rpartition("@")
    masked = f"{scheme}{sep}{MASK}@{host}" if at else url
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, masked)


#: A ``password`` parameter of a query string, up to the next parameter.
_QUERY_PASSWORD = re.compile(r"(?i)([?&;]password=)[^&;]*")
#: What a Redis URL's user part may not hold unencoded.
_RESERVED = "/?#@"
#: How to fix a URL whose credentials hold reserved characters.
_ENCODE_HINT = (
    "percent-encode reserved characters in the user and password "
    "(# as %23, ? as %3F, / as %2F, @ as %40, : in a user as %3A)"
)


def check_url(url: str) -> None:
    """Check that ``url`` reads as the Redis URL it looks like, without showing it.

    A password with an unencoded ``#``, ``?``, ``/`` or ``@`` does not fail a URL parser:
    it moves part of the password into a fragment, query or path, and the client then
    connects somewhere else with part of the password; so the user part (everything up to
    the last ``@``) is checked first, then the URL is parsed as redis-py will.

    Raises:
        RedisUrlError: saying what is wrong and how to fix it; the message holds the URL
            only masked (:func:`mask_url`), never a parser's own words about it.
    """
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    shown = mask_url(url)
    if at and any(char in userinfo for char in _RESERVED):
        raise RedisUrlError(
            f"redis.url {shown}: the user or password is not URL-encoded; {_ENCODE_HINT}"
        )
    try:
        if is_sentinel(url):
            SentinelTarget.parse(url)
        else:
            parse_url(url)
    except Exception:  # whatever the parser says may quote the URL: say it in our words
        raise RedisUrlError(
            f"redis.url {shown} cannot be read: expected "
            "redis://[[user]:password@]host[:port][/db] (or rediss://, unix://, "
            f"redis+sentinel://); {_ENCODE_HINT}"
        ) from None


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
    """An asyncio client for ``url``; a Sentinel URL follows the primary across failovers.

    Raises:
        RedisUrlError: when the URL cannot be read (see :func:`check_url`).
    """
    check_url(url)
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

    Raises:
        RedisUrlError: when the URL cannot be read (see :func:`check_url`).
    """
    check_url(url)
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


def as_str(value: object) -> str:
    """A Redis reply (bytes with the default client) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def refuse_cluster_node(cluster_info: Mapping[str, Any], url: str) -> None:
    """Refuse a server whose ``INFO cluster`` says it is a Redis Cluster node.

    Through a plain URL only the slots of that one node would work; commands on the
    other keys answer ``MOVED``, a failure far from its cause.

    Raises:
        RedisModeError: when ``cluster_enabled`` is set.
    """
    if int(cluster_info.get("cluster_enabled", 0)):
        raise RedisModeError(
            f"redis.url ({mask_url(url)}) is a node of a Redis Cluster: hookline needs one "
            "server (redis://, rediss://, unix://) or a Sentinel group (redis+sentinel://); "
            "it cannot use a Redis Cluster"
        )


def check_server(url: str) -> None:
    """At start-up: refuse a Redis Cluster node (:func:`refuse_cluster_node`). A server
    that does not answer is left to the caller's own handling (the receiver starts not
    ready, workers retry).

    Raises:
        RedisModeError: when ``url`` names a Redis Cluster node.
    """
    client = sync_client(url)
    try:
        info = client.info("cluster")
    except redis.RedisError:
        return
    finally:
        client.close()
    refuse_cluster_node(info, url)
