"""Whether Redis answers, for ``GET /readyz``, at most one ping at a time.

``/readyz`` is unauthenticated and may be probed by many load balancers at once. A
ping per probe would, while Redis is slow, take a pooled connection per probe and
leave none for the group commit; so the answer is remembered for a second, and
probes arriving while a ping is on its way wait for that ping.

The probe also logs when Redis is lost and when it is back, once each, whether a
commit or a ping found out: under load an outage adds two lines to the requests' own.
"""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis
import structlog

from hookline.redis.connection import failure_reason

#: Seconds a ping's answer is reused.
PROBE_TTL = 1.0
#: Longest reason for an outage logged (redis-py's messages can carry a whole repr).
REASON_CHARS = 300

log = structlog.get_logger("hookline.ingest")


class RedisProbe:
    """Caches whether ``client`` answers PING, sharing one ping among concurrent callers."""

    def __init__(self, client: aioredis.Redis, ttl: float = PROBE_TTL) -> None:
        self._client = client
        self._ttl = ttl
        self._checked_at = float("-inf")
        self._ping: asyncio.Task[bool] | None = None
        self._forgotten = 0
        #: The last answer: whether Redis answered.
        self.up = False
        #: When Redis was found unreachable (``time.monotonic()``), while it is.
        self.lost_at: float | None = None

    async def check(self) -> bool:
        """Whether Redis answered a ping within the last ``ttl`` seconds (pinging if need be)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked_at < self._ttl:
            return self.up
        if self._ping is None:
            self._ping = loop.create_task(self._run(), name="readyz-ping")
        # Shielded: a probe that gives up must not cancel the ping others wait for.
        return await asyncio.shield(self._ping)

    def answered(self) -> None:
        """Redis just answered a commit: a cached "down" must not outlive that."""
        if not self.up:
            self.up = True
            self.forget()  # /readyz still confirms with a ping of its own
            self._back()

    def failed(self, exc: BaseException) -> None:
        """A commit just failed with ``exc``: the next check pings; an outage is logged once."""
        self.forget()
        if isinstance(exc, redis.RedisError | OSError):  # not the committer shutting down
            self.up = False
            self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        if self.lost_at is None:
            self.lost_at = time.monotonic()
            log.error(
                "redis unavailable: events are answered 503 until it is back",
                error=type(exc).__name__,
                reason=failure_reason(exc)[:REASON_CHARS],
            )

    def _back(self) -> None:
        if self.lost_at is not None:
            down = time.monotonic() - self.lost_at
            self.lost_at = None
            log.info("redis back", down_seconds=round(down, 1))

    def forget(self) -> None:
        """Drop the cached answer: the next check pings (a commit just said otherwise)."""
        self._checked_at = float("-inf")
        self._forgotten += 1

    async def _run(self) -> bool:
        forgotten = self._forgotten
        up = False
        try:
            for attempt in range(2):  # a pooled connection dead since a restart fails one ping
                try:
                    await self._client.ping()
                except redis.ConnectionError:
                    if attempt:
                        raise
                    continue
                up = True
                break
        except Exception as exc:  # any failure to reach Redis means not ready
            up = False
            self._lost(exc)
        finally:
            self._ping = None
        if up:
            self._back()
        self.up = up
        if forgotten == self._forgotten:  # else the answer may predate what a commit saw
            self._checked_at = asyncio.get_running_loop().time()
        return up
