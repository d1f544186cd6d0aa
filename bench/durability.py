"""Requests/s of `hookline serve` under three Redis durability settings, in alternation.

The settings of the README's Durability table, each with Redis servers of its own, all
started once for the whole run:

  (a) everysec: ``appendfsync everysec`` (the compose default), the baseline;
  (b) always: ``appendfsync always``;
  (c) wait1: a primary with ``appendfsync everysec`` and one replica attached, and the
      receiver configured with ``server.wait_replicas = 1`` (it WAITs for the replica
      in the commit's round trip).

Each measurement is the receiver benchmark's (``bench receiver``, target c): a fresh
``hookline serve`` on the setting's Redis, a warm-up, that Redis emptied, wrk, then a
check that Redis holds every event answered with a 2xx. Afterwards that Redis is emptied
again, its append-only file rewritten and the disk synced, so that it sits idle and
clean while the other settings are measured.

On a shared machine throughput drifts by tens of percent over tens of seconds, more
than these settings differ, so separate runs minutes apart compare the drift. The run
therefore alternates: round 1 measures a, b, c, round 2 again, and so on (--rounds, 3).
Each ratio to everysec is taken within a round, and the run reports each round's and
their median; the table shows each setting's medians over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from bench import BenchError
from bench.durability_report import Setting, as_json, table
from bench.pool import Pool
from bench.receiver import (
    RESULTS_DIR,
    Bench,
    Options,
    add_load_arguments,
    check_load_arguments,
    load_options,
    measure,
    progress,
    run_settings,
    save_results,
    start_redis,
    write_pools,
)
from bench.report import Measured
from bench.wrk import find_wrk

#: The settings compared, the baseline first.
SETTINGS = (
    Setting("a", "everysec", "appendfsync everysec", "everysec", 0),
    Setting("b", "always", "appendfsync always", "always", 0),
    Setting("c", "wait1", "everysec + server.wait_replicas = 1", "everysec", 1),
)
#: Seconds a Redis gets to finish rewriting its append-only file after a measurement.
REWRITE_TIMEOUT = 120.0


def parse_options(argv: Sequence[str]) -> Options:
    """Parse ``argv`` (the arguments after ``durability``) into the receiver's options.

    Their ``appendfsync`` and ``wait_replicas`` are the baseline's; each setting
    replaces them with its own.
    """
    parser = argparse.ArgumentParser(
        prog="./run bench durability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(parser, "setting")
    parser.add_argument("--log-level", default="info", help="hookline serve's (info)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS_DIR}/")
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    return load_options(
        args,
        ("hookline",),
        appendfsync=SETTINGS[0].appendfsync,
        wait_replicas=SETTINGS[0].wait_replicas,
    )


def _bench(
    stack: contextlib.ExitStack,
    setting: Setting,
    opts: Options,
    wrk: str,
    work: Path,
    pools: tuple[Pool, Pool],
) -> Bench:
    """Start ``setting``'s Redis (and replicas) until ``stack`` closes; what measures it."""
    directory = work / setting.name
    primary, replicas = start_redis(
        stack, directory / "redis", setting.appendfsync, setting.wait_replicas
    )
    pids = tuple(s.process.pid for s in (primary, *replicas) if s.process is not None)
    client = redis.Redis.from_url(primary.url)
    stack.callback(client.close)
    options = dataclasses.replace(
        opts, appendfsync=setting.appendfsync, wait_replicas=setting.wait_replicas
    )
    return Bench(options, wrk, directory, *pools, primary.url, pids, client)


def _wait_for_rewrite(client: redis.Redis, deadline: float) -> None:
    """Return once Redis neither rewrites its append-only file nor has a rewrite scheduled."""
    while True:
        info = client.info("persistence")
        if not (info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled")):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"Redis did not finish its AOF rewrite in {REWRITE_TIMEOUT:g} s")
        time.sleep(0.05)


def _quiesce(client: redis.Redis) -> None:
    """Empty a Redis just measured, rewrite its append-only file, and sync the disk.

    Its log of the run would otherwise be rewritten, or written back, while the next
    setting is measured, which fsyncs to the same disk.
    """
    deadline = time.monotonic() + REWRITE_TIMEOUT
    client.flushall()
    _wait_for_rewrite(client, deadline)  # one the run started, of the data just emptied
    # Refused only when Redis began a rewrite since: of the empty data, which will do.
    with contextlib.suppress(redis.ResponseError):
        client.bgrewriteaof()
    _wait_for_rewrite(client, deadline)
    os.sync()


def _rounds(benches: Sequence[tuple[Setting, Bench]], count: int) -> list[list[Measured]]:
    """Measure every setting in turn, round after round."""
    rounds = []
    for n in range(1, count + 1):
        progress(f"round {n} of {count}")
        measured = []
        for setting, bench in benches:
            measured.append(measure(setting.target, bench))
            _quiesce(bench.client)
        rounds.append(measured)
    return rounds


def main(argv: Sequence[str]) -> int:
    """Run the benchmark: 0 when every run's pool sufficed and its stored count checks out."""
    opts = parse_options(argv)
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        work = Path(tmp)
        pools = write_pools(work, opts)
        with contextlib.ExitStack() as stack:
            progress(f"starting Redis for {', '.join(s.name for s in SETTINGS)}")
            benches = [(s, _bench(stack, s, opts, wrk, work, pools)) for s in SETTINGS]
            rounds = _rounds(benches, opts.rounds)
    run = run_settings(opts, pools[1])
    del run["appendfsync"], run["wait_replicas"]  # each setting's own, in redis_settings
    document = as_json(run, SETTINGS, rounds)
    print(json.dumps(document, indent=2) if opts.json else table(run, SETTINGS, rounds))
    if opts.save:
        save_results(document, "durability")
    runs = [m for measured in rounds for m in measured]
    valid = all(m.consistent is not False and not m.wrk.exhausted for m in runs)
    return 0 if valid else 1
