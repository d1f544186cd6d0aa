"""Group commit: the events of concurrent requests share one Redis round trip.

Each request hands its event to the committer and awaits the outcome. While one
batch is on its way to Redis, the next accumulates, so under load a batch holds as
many events as arrived during one round trip, and at low load a batch is one event
with no added wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import redis.asyncio as aioredis
import structlog

from hookline.redis.commit import AsyncEnqueuer, Outcome, Pending

log = structlog.get_logger("hookline.ingest")


class GroupCommitter:
    """Batches :class:`Pending` events from concurrent requests into atomic commits."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        max_batch: int = 256,
        delay: float = 0.0,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
        observe: Callable[[float], object] | None = None,
    ) -> None:
        self._enqueuer = AsyncEnqueuer(
            client, wait_replicas=wait_replicas, wait_timeout=wait_timeout
        )
        self._max_batch = max_batch
        self._delay = delay
        self._pending: list[tuple[Pending, asyncio.Future[Outcome]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Called with each successful commit's round trip, in seconds.
        self._observe = observe

    def start(self) -> None:
        """Start the background flusher."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def close(self) -> None:
        """Commit whatever is pending, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, item: Pending) -> Outcome:
        """Commit one event with whichever others are waiting; raise what Redis raised."""
        if self._closing or self._task is None or self._task.done():
            raise RuntimeError("the committer is not running")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._delay and not self._closing:
                await asyncio.sleep(self._delay)
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush(batch)
            if self._closing:
                return

    async def _flush(self, batch: list[tuple[Pending, asyncio.Future[Outcome]]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = await self._enqueuer.commit([item for item, _ in batch])
        except Exception as exc:  # any Redis failure fails this batch, never the flusher
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if self._observe is not None:
            self._observe(time.perf_counter() - started)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
