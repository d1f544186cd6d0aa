"""Names the benchmark and its workers share, and the synchronous handlers.

Every handler takes the event's payload and ends with one ``INCR`` of
:data:`COUNTER_KEY`: the benchmark times a run by that counter, in Redis, the same way
for every system. The thread-based systems (Dramatiq, Celery, RQ) run these functions;
arq and hookline have their own modules beside this one.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

#: Environment variable holding the benchmark Redis's URL, for the handlers.
REDIS_URL_ENV = "PEERBENCH_REDIS_URL"
#: Environment variable holding arq's ``max_jobs`` for this run.
ARQ_MAX_JOBS_ENV = "PEERBENCH_ARQ_MAX_JOBS"
#: Environment variable holding arq's ``poll_delay`` (seconds) for this run.
ARQ_POLL_DELAY_ENV = "PEERBENCH_ARQ_POLL_DELAY"
#: The counter every handler increments once.
COUNTER_KEY = "peerbench:done"
#: What the "wait, then INCR" handlers wait, in seconds (an I/O call's stand-in).
WAIT_S = 0.010
#: The queue (Dramatiq, Celery, RQ, arq) every peer's jobs go to.
QUEUE = "peerbench"
#: Task names: (a) one INCR; (b) wait :data:`WAIT_S`, then INCR.
INCR = "incr"
SLEEP_INCR = "sleep_incr"

_clients: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    """This process's client of the benchmark's Redis (one per process: RQ forks)."""
    pid = os.getpid()
    found = _clients.get(pid)
    if found is None:
        found = _clients[pid] = redis.Redis.from_url(os.environ[REDIS_URL_ENV])
    return found


def incr(payload: dict[str, Any]) -> None:
    """(a): one ``INCR``."""
    client().incr(COUNTER_KEY)


def sleep_incr(payload: dict[str, Any]) -> None:
    """(b), for threads: ``time.sleep`` :data:`WAIT_S`, then one ``INCR``."""
    time.sleep(WAIT_S)
    client().incr(COUNTER_KEY)
