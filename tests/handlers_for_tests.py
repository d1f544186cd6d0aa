"""Handlers the worker tests run, in-process and in real worker processes.

Each records its effect in Redis (``HINCRBY test:effects <id> 1``), so a test counts
exactly how many times an event took effect. Behaviour is driven by the event body.
"""

from __future__ import annotations

import os
import time

import redis

from hookline.errors import PermanentError
from hookline.workers.handlers import Event, on

_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    url = os.environ["HOOKLINE_REDIS_URL"]
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url)
    return _clients[url]


@on("test")
def behave(event: Event) -> None:
    """Do what the body says, then record one effect."""
    spec = event.json()
    r = _redis()
    r.rpush(f"test:attempts:{event.id}", event.attempt)
    if spec.get("started"):
        r.set(f"test:started:{event.id}", os.getpid())
    if spec.get("die"):
        os._exit(3)  # as a segfault or the OOM killer would: no exception, no outcome
    if spec.get("sleep"):
        time.sleep(float(spec["sleep"]))
    if spec.get("permanent"):
        raise PermanentError("the payload can never be processed")
    if event.attempt <= int(spec.get("fail_times", 0)):
        raise ConnectionError(f"downstream unavailable (attempt {event.attempt})")
    r.hincrby("test:effects", event.id, 1)
