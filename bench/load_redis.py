"""The load benchmark's Redis: the same at every step's start, and its forks' CPU counted.

Every event leaves two markers behind (the receiver's dedupe marker, the worker's done
marker), and every step adds tens of megabytes to the append-only file. Left alone,
each step would run against a bigger data set than the one before, and Redis's
automatic AOF rewrites (a forked child writing the whole data set) would grow with
it: later steps would pay more than earlier ones for the same rate. So between steps
the markers are deleted and the AOF is rewritten while nothing runs. A rewrite the
step's own writes set off still happens during the step, as it would in production,
and its child's CPU is counted as Redis's, not as another process's.
"""

from __future__ import annotations

import time

import redis

from bench import BenchError
from bench.worker_cpu import TICK, cpu_seconds, proc_stat, process_tree
from hookline.redis import keys

#: Keys deleted per round trip when clearing markers.
_CHUNK = 1000
#: Longest wait for an AOF rewrite to finish.
REWRITE_TIMEOUT = 60.0


def forks_cpu(redis_pid: int) -> float:
    """CPU seconds of redis-server's children so far: those it reaped and those alive."""
    fields = proc_stat(redis_pid)
    if fields is None:
        return 0.0
    reaped = (int(fields[13]) + int(fields[14])) / TICK  # cutime, cstime
    alive = process_tree(redis_pid)[1:]
    return reaped + (cpu_seconds(alive) or 0.0)


def _rewriting(client: redis.Redis) -> bool:
    info = client.info("persistence")
    return bool(info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled"))


def _wait_rewrite(client: redis.Redis) -> None:
    deadline = time.monotonic() + REWRITE_TIMEOUT
    while _rewriting(client):
        if time.monotonic() > deadline:
            raise BenchError(f"load: Redis's AOF rewrite took over {REWRITE_TIMEOUT:g} s")
        time.sleep(0.05)


def reset(client: redis.Redis, source: str) -> None:
    """Delete ``source``'s dedupe and done markers, then rewrite the AOF and wait for it."""
    for pattern in (keys.marks(source) + "*", keys.done(source, "*")):
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=_CHUNK):
            batch.append(key)
            if len(batch) >= _CHUNK:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    _wait_rewrite(client)
    client.bgrewriteaof()
    _wait_rewrite(client)


def aof_rewrites(client: redis.Redis) -> int:
    """AOF rewrites since the last ``CONFIG RESETSTAT``."""
    return int(client.info("persistence").get("aof_rewrites", 0))
