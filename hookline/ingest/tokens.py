"""Single-use tokens (Mailgun's): a token is accepted once while its timestamp is fresh.

Mailgun signs a timestamp and a random token, not the body, so a captured request could
be replayed with another body inside the replay window. The receiver claims each token in
Redis (``SET NX`` with an expiry covering the window) before committing its event, and
gives the claim back when the commit fails, so that the provider's retry of an event that
was never acknowledged is not mistaken for a replay.
"""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis

from hookline.redis import keys


class TokenLedger:
    """Claims and releases single-use tokens in Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    @staticmethod
    def ttl(tolerance: float) -> int:
        """Seconds a token is remembered: as long as its timestamp could pass, both ways."""
        return int(2 * tolerance) + 60

    async def claim(self, source: str, token: str, tolerance: float) -> bool:
        """Whether ``token`` was unused (and is now used) for ``source``.

        Raises:
            redis.RedisError: when Redis cannot be reached (the request gets a 503).
        """
        key = keys.used_token(source, token)
        return bool(await self.client.set(key, b"1", nx=True, ex=self.ttl(tolerance)))

    async def release(self, source: str, token: str) -> None:
        """Forget a claim whose event was not committed; best effort (Redis may be down)."""
        with contextlib.suppress(Exception):
            await self.client.delete(keys.used_token(source, token))
