"""Whether Redis answers, for ``GET /readyz``, at most one ping at a time.

``/readyz`` is unauthenticated and may be probed by many load balancers at once. A
ping per probe would, while Redis is slow, take a pooled connection per probe and
leave none for the group commit; so the answer is remembered for a second, and
probes arriving while a ping is on its way wait for that ping.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

#: Seconds a ping's answer is reused.
PROBE_TTL = 1.0


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

    def forget(self) -> None:
        """Drop the cached answer: the next check pings (a commit just said otherwise)."""
        self._checked_at = float("-inf")
        self._forgotten += 1

    async def _run(self) -> bool:
        forgotten = self._forgotten
        try:
            await self._client.ping()
            up = True
        except Exception:  # any failure to reach Redis means not ready
            up = False
        finally:
            self._ping = None
        self.up = up
        if forgotten == self._forgotten:  # else the answer may predate what a commit saw
            self._checked_at = asyncio.get_running_loop().time()
        return up
