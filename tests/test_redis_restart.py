"""Redis restarts: the first webhook after Redis is back is committed, never a 503."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from hookline.redis.commit import AsyncEnqueuer, Outcome, Pending
from hookline.redis.connection import async_client
from hookline.redis.embedded import EmbeddedRedis
from tests.cluster import SECRET, SIGNATURE_HEADER, Receiver, _toml_table
from tests.helpers import queued_envelopes
from tests.load import body_for, deliver
from tests.worker_support import envelope


def _config(path: Path, redis_url: str) -> Path:
    """Two sources on the same scheme: ``test`` deduplicated, ``nodedupe`` not."""
    lines = _toml_table("redis", {"url": redis_url})
    for name, extra in (("test", {}), ("nodedupe", {"dedupe_window": 0})):
        lines += _toml_table(
            f"sources.{name}",
            {"scheme": "hmac", "secrets": [SECRET], "signature_header": SIGNATURE_HEADER, **extra},
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def receiver(private_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[Receiver]:
    """``hookline serve`` on a Redis of the test's own."""
    config = _config(tmp_path / "hookline.toml", private_redis.url)
    with Receiver(config, tmp_path / "serve.log") as process:
        yield process


def _warm(receiver: Receiver, source: str, n: int = 8) -> None:
    """Fill the receiver's pool with several connections (concurrent requests)."""
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        ids = [f"evt_warm_{source}_{i}_{time.monotonic_ns()}" for i in range(n)]
        statuses = list(pool.map(lambda i: deliver(receiver.url(source), body_for(i)), ids))
    assert statuses == [202] * n


class TestRestart:
    @pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
    def test_first_webhook_after_each_restart_is_accepted(
        self, receiver: Receiver, private_redis: EmbeddedRedis, kill: bool
    ) -> None:
        """After Redis restarts (cleanly or killed) and has been back 0.2 s to 3 s, the very
        first webhook, deduplicated or not, gets 202 and is queued, every time."""
        client = redis.Redis.from_url(private_redis.url)
        try:
            for round_, back_for in enumerate((0.2, 3.0, 1.0, 0.5)):
                source = "nodedupe" if round_ % 2 else "test"
                _warm(receiver, source)
                private_redis.restart(kill=kill)
                time.sleep(back_for)
                event_id = f"evt_after_restart_{round_}"
                assert deliver(receiver.url(source), body_for(event_id)) == 202, receiver.output()
                assert event_id in {e.id for e in queued_envelopes(client)}
        finally:
            client.close()
        assert "redis-unavailable" not in receiver.output()


class _DropReplies:
    """A TCP proxy in front of Redis that, when armed, passes the next request on and
    closes the client's connection instead of relaying the reply (a reply lost)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                reply = await up_reader.read(65536)
                if self.armed:
                    self.armed = False
                    await asyncio.sleep(0.05)  # Redis has run the request by now
                    return
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()
            up_writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def lossy(redis_server: EmbeddedRedis, redis_url: str) -> AsyncIterator[_DropReplies]:
    """A reply-dropping proxy in front of the shared Redis."""
    proxy = _DropReplies(redis_server.port)
    await proxy.start()
    yield proxy
    await proxy.close()


def _pending(event_id: str, dedupe_ttl: float) -> Pending:
    return Pending(envelope(event_id), dedupe_ttl)


class TestLostReply:
    async def test_commit_with_dedupe_is_sent_again_and_stored_once(
        self, lossy: _DropReplies, r: redis.Redis
    ) -> None:
        """A commit whose reply is lost is sent once more on a fresh connection when every
        event has a dedupe marker: the second run finds the markers, so the event is
        answered as a duplicate and stored once."""
        client = async_client(f"redis://127.0.0.1:{lossy.port}/0")
        try:
            enqueuer = AsyncEnqueuer(client)
            assert await enqueuer.commit([_pending("warm", 60)]) == [Outcome.ENQUEUED]
            lossy.armed = True
            assert await enqueuer.commit([_pending("e1", 60)]) == [Outcome.DUPLICATE]
        finally:
            await client.aclose()
        assert [e.id for e in queued_envelopes(r)] == ["warm", "e1"]

    async def test_commit_without_dedupe_is_not_sent_again(
        self, lossy: _DropReplies, r: redis.Redis
    ) -> None:
        """A commit holding an event without dedupe (dedupe_window 0) whose reply is lost
        raises instead of being sent again, which would enqueue that event twice."""
        client = async_client(f"redis://127.0.0.1:{lossy.port}/0")
        try:
            enqueuer = AsyncEnqueuer(client)
            assert await enqueuer.commit([_pending("warm", 0)]) == [Outcome.ENQUEUED]
            lossy.armed = True
            with pytest.raises(redis.ConnectionError):
                await enqueuer.commit([_pending("e1", 60), _pending("e2", 0)])
            assert await enqueuer.commit([_pending("e3", 0)]) == [Outcome.ENQUEUED]
        finally:
            await client.aclose()
        assert [e.id for e in queued_envelopes(r)] == ["warm", "e1", "e2", "e3"]
