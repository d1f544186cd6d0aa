"""A handler that records its effects in a *ledger* Redis that no fault ever touches.

Fault tests break the Redis that carries the events (restart it, fail it over); the
effects of the handler stand for a business database outside that Redis, so they are
counted elsewhere: ``HINCRBY ledger:effects <id> 1`` plus one entry per run in
``ledger:runs:<id>`` (worker pid, time, attempt), written in one transaction. A test
then counts exactly how many times each event took effect, and which process did it.

The body drives it: ``{"fail_times": n}`` makes the first ``n`` attempts raise;
``{"linger": s}`` keeps the handler running ``s`` seconds after its effect, which widens
the window between the effect and the worker's done marker so a test can strike in it.
"""

from __future__ import annotations

import os
import time

import redis

from hookline.workers.handlers import Event, on

#: Environment variable naming the ledger Redis (a plain ``redis://`` URL).
LEDGER_ENV = "HOOKLINE_TEST_LEDGER_URL"
#: Hash: event id -> number of successful runs.
EFFECTS = "ledger:effects"
#: Hash: event id -> number of failed attempts.
FAILURES = "ledger:failures"

_clients: dict[str, redis.Redis] = {}


def runs_key(event_id: str) -> str:
    """The list of ``"<pid> <unix time> <attempt>"`` entries, one per successful run."""
    return f"ledger:runs:{event_id}"


def _ledger() -> redis.Redis:
    url = os.environ[LEDGER_ENV]
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url)
    return _clients[url]


@on("test")
def record(event: Event) -> None:
    """Fail the first ``fail_times`` attempts, then record one effect in the ledger, then
    linger if asked to."""
    spec = event.json()
    ledger = _ledger()
    if event.attempt <= int(spec.get("fail_times", 0)):
        ledger.hincrby(FAILURES, event.id, 1)
        raise ConnectionError(f"downstream unavailable (attempt {event.attempt})")
    with ledger.pipeline(transaction=True) as pipe:
        pipe.hincrby(EFFECTS, event.id, 1)
        pipe.rpush(runs_key(event.id), f"{os.getpid()} {time.time():.6f} {event.attempt}")
        pipe.execute()
    if spec.get("linger"):
        time.sleep(float(spec["linger"]))
