"""The asyncio client's command packing (hiredis where it writes the same bytes)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from hookline.redis.connection import async_client

#: Arguments of every type a command may carry, and some text hiredis must encode alike.
ARGS: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("EVAL", "return 1", 2, "a", "b", 3, -4, 2**70, b"\x00\xff", memoryview(b"mv")),
    ("SET", "\u00e9\u20ac", 0.1 + 0.2),
    ("SET", "k", float("inf")),
    ("CONFIG GET", "maxmemory"),
    ("CLIENT\tLIST",),
    ("SET", "k", bytearray(b"ba")),
]


def connection_of(client: Any) -> Any:
    """A connection as the client's pool makes them (not connected)."""
    pool = client.connection_pool
    return pool.connection_class(**pool.connection_kwargs)


class TestPacking:
    @pytest.mark.parametrize("args", ARGS)
    async def test_same_bytes_as_redis_py(self, redis_url: str, args: tuple[Any, ...]) -> None:
        """Whatever packs it, a command goes out byte for byte as redis-py writes it."""
        client = async_client(redis_url)
        ours = connection_of(client)
        theirs = Connection()
        assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
        await client.aclose()

    @pytest.mark.parametrize("value", [None, True])
    async def test_refused_types_raise_redis_pys_error(self, redis_url: str, value: Any) -> None:
        client = async_client(redis_url)
        with pytest.raises(DataError):
            connection_of(client).pack_command("SET", "k", value)
        await client.aclose()

    async def test_a_configured_encoding_is_honoured(self, redis_url: str) -> None:
        """With ?encoding=latin-1 text goes out as Latin-1, as the blocking clients write it."""
        client = async_client(redis_url + "?encoding=latin-1")
        await client.set("caf\u00e9", "1")
        await client.aclose()
        plain = redis.Redis.from_url(redis_url)
        assert plain.get(b"caf\xe9") == b"1"
        plain.close()

    async def test_multi_word_commands_reach_redis(self, redis_url: str) -> None:
        client = async_client(redis_url)
        assert "maxmemory" in await client.config_get("maxmemory")
        await client.aclose()
