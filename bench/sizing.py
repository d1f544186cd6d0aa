"""What one event costs Redis: bytes queued and retained, and Redis CPU to commit and run it.

For each batch size it empties a private redis-server, commits ``--events`` Stripe-shaped
envelopes (the receiver's own commit, ``--batch`` events per job) and reads Redis's
``used_memory`` (bytes the allocator holds for data: no AOF, no fragmentation), then
runs hookline's worker in burst mode with a no-op handler until every event is done and
reads it again. Per event:

  queued    = (used after the commit - used before) / events
  retained  = (used after processing - used before) / events
  commit    = Redis CPU seconds (user + system) during the commit / events, in µs
  process   = Redis CPU seconds while the worker runs them / events, in µs

``retained`` is what each processed event costs for the whole dedupe window (its
dedupe and done state), as a steady source pays it: the marks' bucket opens sized from
the count a previous bucket of the same traffic would have left. Bytes are reported
against the body's size. The CPU figures are those of the Redis process alone
(``/proc``; Linux), what sizing a shard needs: one Redis core carries about
1e6 / (commit + process) events a second.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench import BenchError
from bench.cpu import process_seconds
from bench.pool import write_pool
from bench.receiver import revision, save_results
from bench.worker import SignedEvent, enqueue_hookline, signed_events
from bench.worker_handlers import NOOP_SOURCE
from hookline.config.defaults import DEFAULT_DEDUPE_WINDOW
from hookline.config.settings import parse_settings
from hookline.redis import keys
from hookline.redis.embedded import EmbeddedRedis
from hookline.redis.marks import BUCKETS_PER_WINDOW, marks_window
from hookline.workers.worker import Worker

#: Targets of issue 14: queued bytes ÷ body at 16 and at 1 event per job; retained bytes.
TARGETS = {"queued_ratio_16": 1.3, "queued_ratio_1": 1.8, "retained_bytes": 80.0}


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _settle(client: redis.Redis) -> int:
    """``used_memory`` once lazy frees and the script cache are out of the picture."""
    client.memory_purge()
    time.sleep(0.2)
    return _used(client)


def _steady(client: redis.Redis, events: int) -> None:
    """Leave the count a previous bucket of marks would have left for ``events`` events,
    so that the marks' bucket opens sized for them, as a steady source's does (a fresh
    Redis's first bucket grows generations of sub-hashes instead: a burst)."""
    seconds, micros = client.time()
    span = math.ceil(marks_window(DEFAULT_DEDUPE_WINDOW) * 1000 / BUCKETS_PER_WINDOW)
    current = (seconds * 1000 + micros // 1000) // span
    client.hset(keys.marks(NOOP_SOURCE), f"{span}:{current - 1}:n", events)


def measure(
    client: redis.Redis, url: str, pid: int, events: Sequence[SignedEvent], batch: int
) -> dict[str, Any]:
    """Queue ``events`` ``batch`` per job, process them, and say what each cost."""
    client.flushall()
    settings = parse_settings(
        {
            "redis": {"url": url},
            "sources": {NOOP_SOURCE: {"scheme": "stripe", "secrets": ["unused"]}},
            "workers": {"handlers": ["bench.worker_handlers"]},
        },
        {},
    )
    # Once, so that the scripts and the queue registry are loaded before the baseline.
    enqueue_hookline(client, events[:1], 1)
    Worker(settings, url, burst=True).run()
    client.flushall()
    _steady(client, len(events))
    before = _settle(client)
    cpu = process_seconds(pid)
    jobs = enqueue_hookline(client, events, batch)
    commit_cpu = process_seconds(pid) - cpu
    queued = _settle(client) - before
    cpu = process_seconds(pid)
    Worker(settings, url, burst=True).run()
    process_cpu = process_seconds(pid) - cpu
    if client.llen(keys.rq_queue("hookline")) or client.zcard(keys.retries()):
        raise BenchError("the worker left events unprocessed")
    retained = _settle(client) - before
    body = sum(len(e.body) for e in events) / len(events)
    count = len(events)
    return {
        "batch": batch,
        "events": count,
        "jobs": jobs,
        "body_bytes": round(body, 1),
        "queued_bytes_per_event": round(queued / count, 1),
        "queued_ratio": round(queued / count / body, 3),
        "retained_bytes_per_event": round(retained / count, 1),
        "retained_keys": int(client.dbsize()),
        "commit_redis_us_per_event": round(commit_cpu * 1e6 / count, 1),
        "process_redis_us_per_event": round(process_cpu * 1e6 / count, 1),
    }


def table(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The run as a table."""
    lines = [
        f"Redis memory per event: {settings['events']:,} Stripe-shaped events of "
        f"{results[0]['body_bytes']:.0f} body bytes; revision {settings['revision']}",
        "",
        f"{'events/job':>10}{'queued B/event':>16}{'÷ body':>8}{'retained B/event':>18}"
        f"{'keys left':>11}{'Redis µs: commit':>18}{'process':>9}",
    ]
    for r in results:
        lines.append(
            f"{r['batch']:>10}{r['queued_bytes_per_event']:>16,.0f}{r['queued_ratio']:>8.2f}"
            f"{r['retained_bytes_per_event']:>18,.1f}{r['retained_keys']:>11,}"
            f"{r['commit_redis_us_per_event']:>18.1f}{r['process_redis_us_per_event']:>9.1f}"
        )
    lines.append(
        f"targets: queued ÷ body <= {TARGETS['queued_ratio_16']} at 16/job, "
        f"<= {TARGETS['queued_ratio_1']} at 1/job; retained <= {TARGETS['retained_bytes']:.0f} B"
    )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; 0 when every event was processed."""
    parser = argparse.ArgumentParser(
        prog="./run bench sizing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per run (20000)")
    parser.add_argument("--batches", default="1,16", help="events per job to measure (1,16)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if args.events < 1 or not batches or min(batches) < 1:
        parser.error("--events and --batches must be positive")
    with tempfile.TemporaryDirectory(prefix="hookline-bench-memory-") as tmp:
        pool = write_pool(Path(tmp) / "pool", tag="mem", threads=1, per_thread=args.events)
        events = signed_events(pool)
        with EmbeddedRedis(Path(tmp) / "redis") as server:
            assert server.process is not None  # started by entering
            pid = server.process.pid
            client = redis.Redis.from_url(server.url)
            try:
                results = [measure(client, server.url, pid, events, b) for b in batches]
            finally:
                client.close()
    settings = {"events": args.events, "revision": revision()}
    document = {"benchmark": "sizing", "settings": settings, "results": results}
    document["targets"] = TARGETS
    print(json.dumps(document, indent=2) if args.json else table(results, settings))
    if not args.no_save:
        save_results(document, "sizing")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
