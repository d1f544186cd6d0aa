"""hookline's handlers: one route per handler kind, each ending with one ``INCR``.

Named in ``[workers] handlers`` as ``peerjobs.hookline_jobs``. The async handler keeps
an asyncio client for the event loop it runs on: one for the worker's life where the
worker keeps a loop, a new one per event where it runs each async handler in a loop of
its own (as a real async handler's client would have to be).
"""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio

from hookline import Event, on

from .common import COUNTER_KEY, REDIS_URL_ENV, WAIT_S, client

#: Sources of the benchmark's events, one per handler kind.
INCR_SOURCE = "incr"
SLEEP_SOURCE = "sleep"
ASYNC_SOURCE = "asleep"

#: The asyncio client and the loop it belongs to (replaced when the loop changes).
_async_client: list[tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis]] = []


@on(INCR_SOURCE)
def incr(event: Event) -> None:
    """(a): one ``INCR``."""
    client().incr(COUNTER_KEY)


@on(SLEEP_SOURCE)
def sleep_incr(event: Event) -> None:
    """(b), sync: ``time.sleep`` 10 ms, then one ``INCR``."""
    time.sleep(WAIT_S)
    client().incr(COUNTER_KEY)


@on(ASYNC_SOURCE)
async def asleep_incr(event: Event) -> None:
    """(b), async: ``asyncio.sleep`` 10 ms, then one ``INCR`` on an asyncio client."""
    await asyncio.sleep(WAIT_S)
    loop = asyncio.get_running_loop()
    if not _async_client or _async_client[0][0] is not loop:
        _async_client[:] = [(loop, redis.asyncio.Redis.from_url(os.environ[REDIS_URL_ENV]))]
    await _async_client[0][1].incr(COUNTER_KEY)
