"""What the worker benchmark's workers run: a no-op RQ function and hookline handlers.

Kept apart from :mod:`bench.worker` so that the worker processes import only this
(a stock ``rq worker`` imports the function by name, ``hookline work`` the module
named in ``[workers] handlers``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from hookline.config.settings import REDIS_URL_ENV
from hookline.workers.handlers import Event, on

#: Source of the events whose handler does nothing (throughput runs).
NOOP_SOURCE = "noop"
#: Source of the events whose handler records its start (latency run).
LATENCY_SOURCE = "latency"
#: Redis list of ``"<event id> <handler start> <received_at>"`` records (latency run).
LATENCY_KEY = "bench:latency"

_clients: dict[str, redis.Redis] = {}


def rq_noop(payload: dict[str, Any]) -> None:
    """The stock RQ job: takes the event payload and does nothing with it."""


@on(NOOP_SOURCE)
def noop(event: Event) -> None:
    """The hookline handler of the throughput runs: does nothing."""


@on(LATENCY_SOURCE)
def record_latency(event: Event) -> None:
    """Record when this handler started, next to when the receiver accepted the event.

    The time is taken first thing, so the record's own round trip is not counted.
    The Redis URL comes from the environment the benchmark gives the worker process.
    """
    started = time.time()
    url = os.environ[REDIS_URL_ENV]
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url)
    client.rpush(LATENCY_KEY, f"{event.id} {started!r} {event.received_at!r}")
