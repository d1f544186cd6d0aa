"""Dead-letter tooling at 1,000 and 100,000 entries: stats, first pages, starting a replay.

Fills a private redis-server with realistic dead letters (~1 KB envelopes with their
attempts; four sources, a dozen types, four error types), written as the workers write
them (the same atomic script, pipelined), then times what an operator does first, each
the median of several runs:

  stats                    counts by source, type and error, oldest and newest
  list                     the first page (50), unfiltered and filtered, with its count
  replay start             a filtered replay, from the command's start to the first
                           events moved back to their queue (no dry run, no pre-count)

and prints each time at both sizes with the ratio. Target: every ratio within 3x,
except stats, which reads counters. Rows marked (info) show a rare unindexed match.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import redis

from hookline.dlq.ops import Bulk, Selection, stats
from hookline.dlq.search import Filter, Search
from hookline.dlq.store import DeadLetters
from hookline.envelope import Envelope
from hookline.redis import keys
from hookline.redis.connection import as_str
from hookline.redis.embedded import EmbeddedRedis
from hookline.redis.jobs import parse_job_data

#: The ratio of the large to the small case aimed at.
TARGET_RATIO = 3.0
#: Events per page, as ``hookline dlq list`` shows by default.
PAGE = 50
#: The rate of the timed replay (events per second).
REPLAY_RATE = 100.0

_SOURCES = (  # name, share in percent, event types
    (
        "stripe",
        60,
        ("invoice.paid", "charge.failed", "customer.updated", "payment_intent.succeeded"),
    ),
    ("github", 20, ("push", "pull_request", "issues")),
    ("shopify", 15, ("orders/create", "orders/paid", "products/update")),
    ("slack", 5, ("app_mention", "message")),
)
_ERRORS = (  # error type, share in percent, message
    ("ConnectionError", 50, "downstream unavailable: connect to billing-api:443 refused"),
    ("TimeoutError", 25, "billing-api did not answer within 30 s"),
    ("HTTPError", 20, "503 Service Unavailable from billing-api"),
    ("ValueError", 5, "amount must be positive"),
)
_TRACE = (
    'Traceback (most recent call last):\n  File "app/handlers.py", line 42, in on_invoice\n'
    "    client.post(url, json=payload)\n"
)


def _pick(table: Sequence[tuple[str, int, object]], i: int) -> tuple[str, object]:
    point = (i * 37) % 100
    for name, share, extra in table:
        if point < share:
            return name, extra
        point -= share
    raise AssertionError("shares add up to 100")


def make_letter(i: int, base: float) -> tuple[Envelope, float]:
    """Dead letter number ``i``: its envelope (attempts included) and time of death."""
    source, types = _pick(_SOURCES, i)
    assert isinstance(types, tuple)
    event_type = types[i % len(types)]
    error, message = _pick(_ERRORS, i // 7)
    if i % 1000 == 999:
        error, message = "CardError", "card_declined: insufficient funds"  # 0.1%: rare
    event_id = f"evt_{i:08d}"
    body = orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(base) + i,
            "data": {
                "object": {
                    "id": f"in_{i:012d}",
                    "customer": f"cus_{i % 5000:08d}",
                    "amount_due": 1000 + i % 9000,
                    "currency": "eur",
                    "lines": [{"description": f"Plan {i % 3}", "amount": 1000 + i % 9000}],
                    "metadata": {"order": f"ord_{i:010d}", "note": "x" * 200},
                }
            },
        }
    )
    dead_at = base + i * 0.01
    attempts = [
        {
            "at": dead_at - 60 * (3 - n),
            "error_type": error,
            "message": f"{message} (attempt {n})",
            "traceback": _TRACE + f"{error}: {message}",
            "worker": "worker-1.4242.a1b2c3",
            "seconds": 0.5,
        }
        for n in (1, 2, 3)
    ]
    headers = {"content-type": "application/json", "stripe-signature": f"t={i},v1=" + "ab" * 32}
    env = Envelope(source, event_id, event_type, dead_at - 200, headers, body, "hookline", attempts)
    return env, dead_at


def fill(dead_letters: DeadLetters, count: int, base: float) -> float:
    """Write ``count`` dead letters, pipelined; returns the seconds it took."""
    started = time.perf_counter()
    for start in range(0, count, 1000):
        with dead_letters.client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 1000, count)):
                env, dead_at = make_letter(i, base)
                dead_letters.add(env, reason="exhausted", worker="worker-1", now=dead_at, pipe=pipe)
            pipe.execute()
    return time.perf_counter() - started


def restore(dead_letters: DeadLetters, base: float) -> int:
    """Put back what a timed replay moved (and drop its jobs): the next run sees the same."""
    client = dead_letters.client
    job_ids = [as_str(j) for j in client.lrange(keys.rq_queue("hookline"), 0, -1)]
    moved = []
    for job_id in job_ids:
        data = client.hget(keys.rq_job(job_id), "data")
        assert isinstance(data, bytes)
        moved += [int(env.id.removeprefix("evt_")) for env in parse_job_data(data)]
    with client.pipeline(transaction=False) as pipe:
        for i in moved:
            env, dead_at = make_letter(i, base)
            dead_letters.add(env, reason="exhausted", worker="worker-1", now=dead_at, pipe=pipe)
        pipe.delete(keys.rq_queue("hookline"), *[keys.rq_job(j) for j in job_ids])
        pipe.execute()
    return len(moved)


def search_ids(client: redis.Redis, count: int) -> list[str]:
    """The ids of the ``count`` newest dead letters."""
    return [as_str(i) for i in client.zrevrange(keys.dlq_index(), 0, count - 1)]


def first_moved(dead_letters: DeadLetters, flt: Filter) -> None:
    """Start a filtered replay and stop it once its first step has moved."""
    job = Bulk(dead_letters, Selection(filter=flt), rate=REPLAY_RATE)
    job.run(should_stop=lambda: job.progress.done > 0)
    assert job.progress.done > 0, "the replay moved nothing"


@dataclass(frozen=True, slots=True)
class Operation:
    """One timed operation."""

    name: str
    run: Callable[[DeadLetters], object]
    after: Callable[[DeadLetters], object] | None = None
    info: bool = False


def _list(flt: Filter) -> Callable[[DeadLetters], object]:
    def run(dead_letters: DeadLetters) -> object:
        search = Search(dead_letters)
        page = search.page(flt, limit=PAGE)
        assert page.items, f"nothing found for {flt}"
        return search.count(flt)

    return run


def operations(base: float) -> list[Operation]:
    """What is timed, in order."""

    def put_back(dead_letters: DeadLetters) -> object:
        return restore(dead_letters, base)

    return [
        Operation("stats", stats),
        Operation("list, first page", _list(Filter())),
        Operation("list, source=github", _list(Filter(source="github"))),
        Operation("list, type=pull_request", _list(Filter(type="pull_request"))),
        Operation("list, error~timeout", _list(Filter(error="timeout"))),
        Operation("list, error~declined (0.1%)", _list(Filter(error="declined")), info=True),
        Operation(
            "replay start, source=github", lambda d: first_moved(d, Filter("github")), put_back
        ),
        Operation(
            "replay start, error~timeout",
            lambda d: first_moved(d, Filter(error="timeout")),
            put_back,
        ),
    ]


def time_it(op: Operation, dead_letters: DeadLetters, repeat: int) -> float:
    """Median seconds of ``repeat`` runs of ``op`` (after one untimed run)."""
    times = []
    for n in range(repeat + 1):
        started = time.perf_counter()
        op.run(dead_letters)
        took = time.perf_counter() - started
        if op.after is not None:
            op.after(dead_letters)
        if n:
            times.append(took)
    return statistics.median(times)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Results:
    """Median seconds of each operation at each size, and how the fills went."""

    sizes: list[int]
    repeat: int
    info: list[str]
    fill_seconds: dict[int, float] = field(default_factory=dict)
    bytes_per_entry: dict[int, float] = field(default_factory=dict)
    entry_bytes: dict[int, float] = field(default_factory=dict)
    seconds: dict[str, dict[int, float]] = field(default_factory=dict)

    def ratio(self, name: str) -> float:
        """Largest size's time over the smallest's."""
        by_size = self.seconds[name]
        return by_size[self.sizes[-1]] / by_size[self.sizes[0]]

    def missed(self) -> list[str]:
        """Operations held to the target whose ratio misses it."""
        if len(self.sizes) < 2:
            return []
        held = [n for n in self.seconds if n != "stats" and n not in self.info]
        return [n for n in held if self.ratio(n) > TARGET_RATIO]

    def as_json(self) -> dict[str, object]:
        """A JSON-ready summary (times in milliseconds)."""
        return {
            "benchmark": "dlq",
            "sizes": self.sizes,
            "repeat": self.repeat,
            "fill_seconds": self.fill_seconds,
            "bytes_per_entry": self.bytes_per_entry,
            "entry_bytes": self.entry_bytes,
            "ms": {
                n: {s: round(t * 1000, 3) for s, t in v.items()} for n, v in self.seconds.items()
            },
            "ratio": {n: round(self.ratio(n), 2) for n in self.seconds}
            if len(self.sizes) > 1
            else {},
            "target_ratio": TARGET_RATIO,
            "missed": self.missed(),
        }

    def table(self) -> str:
        """The results as a table of milliseconds, with the ratio and the verdict."""
        two = len(self.sizes) > 1
        head = f"{'operation':<32}" + "".join(f"{s:>12,}" for s in self.sizes)
        lines = [head + ("       ratio  target" if two else "")]
        for name, by_size in self.seconds.items():
            row = f"{name:<32}" + "".join(f"{by_size[s] * 1000:>9.2f} ms" for s in self.sizes)
            if two:
                if name in self.info:
                    verdict = "(info)"
                elif name == "stats":
                    verdict = "(counters)"
                else:
                    verdict = "ok" if self.ratio(name) <= TARGET_RATIO else "MISSED"
                row += f"{self.ratio(name):>11.2f}x  {verdict}"
            lines.append(row)
        return "\n".join(lines)


def run(sizes: Sequence[int], repeat: int, work: Path) -> Results:
    """Fill and time at each size, on a private redis-server."""
    base = time.time() - 86400
    ops = operations(base)
    results = Results(list(sizes), repeat, [op.name for op in ops if op.info])
    results.seconds = {op.name: {} for op in ops}
    with EmbeddedRedis(work / "redis", appendfsync="everysec") as server:
        client = redis.Redis.from_url(server.url)
        dead_letters = DeadLetters(client)
        for size in sizes:
            client.flushall()
            took = fill(dead_letters, size, base)
            per_entry = int(client.info("memory")["used_memory"]) / size
            sample = [int(client.strlen(keys.dlq_entry(i))) for i in search_ids(client, 100)]
            results.entry_bytes[size] = round(statistics.mean(sample))
            results.fill_seconds[size] = round(took, 2)
            results.bytes_per_entry[size] = round(per_entry)
            _progress(
                f"filled {size:,} dead letters in {took:.1f} s: entries of "
                f"{results.entry_bytes[size]:,} bytes of JSON (envelope and 3 attempts), "
                f"{per_entry / 1024:.1f} KiB of Redis memory each with indexes"
            )
            for op in ops:
                results.seconds[op.name][size] = time_it(op, dead_letters, repeat)
        client.close()
    return results


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; 1 when a ratio misses the target, else 0."""
    parser = argparse.ArgumentParser(
        prog="./run bench dlq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="1000,100000", help="comma-separated (1000,100000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per operation (7)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error("--sizes: comma-separated integers")
    if not sizes or min(sizes) < 1000 or args.repeat < 1:
        parser.error("sizes must be at least 1000 (a page and a replay need entries), repeat >= 1")
    with tempfile.TemporaryDirectory(prefix="hookline-bench-dlq-") as tmp:
        results = run(sizes, args.repeat, Path(tmp))
    print(json.dumps(results.as_json(), indent=2) if args.json else results.table())
    return 1 if results.missed() else 0
