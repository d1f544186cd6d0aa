"""arq's coroutines: (a) one ``INCR``, (b) ``asyncio.sleep`` then ``INCR``, on arq's client.

Run with ``arq peerjobs.arq_jobs.WorkerSettings``; ``max_jobs`` comes from the
environment (arq's default, 10, unless the benchmark sets more).
"""

from __future__ import annotations

import asyncio
import logging.config
import os
from typing import Any

from arq.connections import RedisSettings
from arq.worker import func

from .common import (
    ARQ_MAX_JOBS_ENV,
    ARQ_POLL_DELAY_ENV,
    COUNTER_KEY,
    INCR,
    QUEUE,
    REDIS_URL_ENV,
    SLEEP_INCR,
    WAIT_S,
)

#: arq's log configuration with its per-job lines (two INFO lines a job) left out, as
#: the other systems run (``--custom-log-dict peerjobs.arq_jobs.LOGGING``).
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def incr(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """(a): one ``INCR`` on the worker's own Redis client."""
    await ctx["redis"].incr(COUNTER_KEY)


async def sleep_incr(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """(b), async: ``asyncio.sleep`` :data:`WAIT_S`, then one ``INCR``."""
    await asyncio.sleep(WAIT_S)
    await ctx["redis"].incr(COUNTER_KEY)


class WorkerSettings:
    """What ``arq`` reads: the functions, the Redis, the queue and ``max_jobs``."""

    functions = (func(incr, name=INCR), func(sleep_incr, name=SLEEP_INCR))
    redis_settings = RedisSettings.from_dsn(os.environ[REDIS_URL_ENV])
    queue_name = QUEUE
    max_jobs = int(os.environ.get(ARQ_MAX_JOBS_ENV, "10"))
    poll_delay = float(os.environ.get(ARQ_POLL_DELAY_ENV, "0.5"))


logging.config.dictConfig(LOGGING)
