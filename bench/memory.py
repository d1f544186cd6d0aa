"""Redis bytes per event: queued (at 1 and 16 events per job) and retained once processed.

For each batch size it empties a private redis-server, commits ``--events`` Stripe-shaped
envelopes (the receiver's own commit, ``--batch`` events per job) and reads Redis's
``used_memory`` (bytes the allocator holds for data: no AOF, no fragmentation), then
runs hookline's worker in burst mode with a no-op handler until every event is done and
reads it again. Per event:

  queued    = (used after the commit - used before) / events
  retained  = (used after processing - used before) / events

``retained`` is what each processed event costs for the whole dedupe window (its
dedupe and done state). Both are reported against the body's size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench import BenchError
from bench.pool import write_pool
from bench.receiver import revision, save_results
from bench.worker import SignedEvent, enqueue_hookline, signed_events
from bench.worker_handlers import NOOP_SOURCE
from hookline.config.settings import parse_settings
from hookline.redis import keys
from hookline.redis.embedded import EmbeddedRedis
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


def measure(
    client: redis.Redis, url: str, events: Sequence[SignedEvent], batch: int
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
    before = _settle(client)
    jobs = enqueue_hookline(client, events, batch)
    queued = _settle(client) - before
    Worker(settings, url, burst=True).run()
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
    }


def table(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """The run as a table."""
    lines = [
        f"Redis memory per event: {settings['events']:,} Stripe-shaped events of "
        f"{results[0]['body_bytes']:.0f} body bytes; revision {settings['revision']}",
        "",
        f"{'events/job':>10}{'queued B/event':>16}{'÷ body':>8}{'retained B/event':>18}"
        f"{'keys left':>11}",
    ]
    for r in results:
        lines.append(
            f"{r['batch']:>10}{r['queued_bytes_per_event']:>16,.0f}{r['queued_ratio']:>8.2f}"
            f"{r['retained_bytes_per_event']:>18,.1f}{r['retained_keys']:>11,}"
        )
    lines.append(
        f"targets: queued ÷ body <= {TARGETS['queued_ratio_16']} at 16/job, "
        f"<= {TARGETS['queued_ratio_1']} at 1/job; retained <= {TARGETS['retained_bytes']:.0f} B"
    )
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; 0 when every event was processed."""
    parser = argparse.ArgumentParser(prog="./run bench memory", description=__doc__)
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
            client = redis.Redis.from_url(server.url)
            try:
                results = [measure(client, server.url, events, batch) for batch in batches]
            finally:
                client.close()
    settings = {"events": args.events, "revision": revision()}
    document = {"benchmark": "memory", "settings": settings, "results": results}
    document["targets"] = TARGETS
    print(json.dumps(document, indent=2) if args.json else table(results, settings))
    if not args.no_save:
        save_results(document, "memory")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
