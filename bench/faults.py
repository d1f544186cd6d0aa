"""The fault suite at full size: steady signed load while workers, Redis and receivers fail.

A pipeline of real processes (Redis with ``appendfsync always``, receivers, a worker
fleet, and a ledger Redis for the handler's effects) takes a steady signed load with
10 % duplicate deliveries and 5 % of events failing their first attempt (1 % always
failing, to reach the dead-letter queue), while worker processes are SIGKILLed, Redis is
restarted (SIGTERM and SIGKILL in turn) and receivers are restarted (SIGTERM), spread
over the run. Then it waits for the work to settle and reconciles: every 2xx handled
once or dead-lettered, every other request answered 4xx/503 or refused visibly, and
every re-run explained by a fault between a handler's effect and its done marker.

Exit status 1 when the promise is broken.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.faultsuite import (
    KILL_REDIS,
    KILL_WORKER,
    RESTART_RECEIVER,
    RESTART_REDIS,
    SuiteOptions,
    run_suite,
)


def schedule(
    duration: float, kills: int, redis_restarts: int, receiver_restarts: int, seed: int
) -> tuple[tuple[float, str], ...]:
    """Faults spread evenly over ``duration`` in a shuffled order; Redis restarts alternate
    between SIGTERM and SIGKILL."""
    names = [KILL_WORKER] * kills + [RESTART_RECEIVER] * receiver_restarts
    names += [RESTART_REDIS if i % 2 == 0 else KILL_REDIS for i in range(redis_restarts)]
    random.Random(seed).shuffle(names)
    step = duration / (len(names) + 1)
    return tuple((round(step * (i + 1), 2), name) for i, name in enumerate(names))


def parse_options(argv: Sequence[str]) -> tuple[SuiteOptions, Path | None]:
    """Parse ``argv`` (the arguments after ``faults``)."""
    parser = argparse.ArgumentParser(
        prog="./run bench faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (120)")
    parser.add_argument("--rate", type=float, default=150.0, help="deliveries per second (150)")
    parser.add_argument("--receivers", type=int, default=2, help="receiver processes (2)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--kills", type=int, default=20, help="worker SIGKILLs (20)")
    parser.add_argument("--redis-restarts", type=int, default=6, help="Redis restarts (6)")
    parser.add_argument("--receiver-restarts", type=int, default=6, help="receiver restarts (6)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep logs and data in this directory")
    args = parser.parse_args(list(argv))
    options = SuiteOptions(
        duration=args.duration,
        rate=args.rate,
        receivers=args.receivers,
        workers=args.workers,
        schedule=schedule(
            args.duration, args.kills, args.redis_restarts, args.receiver_restarts, args.seed
        ),
        settle_timeout=60.0,
        seed=args.seed,
    )
    return options, args.keep


def main(argv: Sequence[str]) -> int:
    """Run the suite, print the report; 1 if the promise was broken."""
    options, keep = parse_options(argv)
    print(
        f"fault suite: {options.duration:g} s at {options.rate:g}/s, "
        f"{options.receivers} receivers, {options.workers} workers, "
        f"{len(options.schedule)} faults",
        flush=True,
    )
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        result = run_suite(keep, options)
    else:
        with tempfile.TemporaryDirectory(prefix="hookline-faults-") as tmp:
            result = run_suite(Path(tmp), options)
    print(result.render())
    problems = result.reconciliation.problems()
    bad_exits = [code for code in result.receiver_exit_codes if code != 0]
    if bad_exits:
        problems.append(f"receivers exited with {bad_exits} after SIGTERM")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print("promise kept" if not problems else f"promise broken ({len(problems)} problem(s))")
    return 1 if problems else 0
