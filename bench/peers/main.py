"""``./run bench peers``: calibrate, measure the rounds, the lag run, then report and save."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from bench import BenchError
from bench.peers.report import Results, table
from bench.peers.run import (
    Bench,
    Options,
    calibrate,
    measure_rounds,
    open_bench,
    pairs,
    parse_options,
    settings,
    start_redis,
    temporary_work,
)
from bench.receiver import progress, save_results
from bench.worker import WorkerBench, run_end_to_end, write_config
from bench.worker_latency import Latency
from hookline.redis.embedded import free_port


def lag_run(bench: Bench, results: Results, opts: Options) -> tuple[Latency | None, str]:
    """The end-to-end run at ``opts.lag_share`` of hookline's best median events/s."""
    if opts.lag_seconds <= 0:
        return None, "--no-lag"
    rates = [
        rate
        for name, kind in results.pairs()
        if results.is_hookline(name) and (rate := results.rate(name, kind))
    ]
    if not rates:
        return None, "hookline was not measured"
    rate = max(rates) * opts.lag_share
    port = free_port()
    config = write_config(bench.work, bench.url, port)
    progress(f"lag: {rate:,.0f} events/s for {opts.lag_seconds:g} s")
    worker_bench = WorkerBench(bench.client, bench.url, bench.redis_pid, config, port, bench.work)
    try:
        return run_end_to_end(worker_bench, rate, opts.lag_seconds, "peers"), ""
    except BenchError as exc:  # wrk missing, say: the throughput figures still stand
        progress(f"lag run skipped: {exc}")
        return None, str(exc).splitlines()[0]


def run(argv: Sequence[str], doc: str) -> int:
    """Parse ``argv``, run everything, print the table (or JSON); 0 when targets are met."""
    opts = parse_options(argv, doc)
    todo = pairs(opts)
    with temporary_work() as tmp, start_redis(Path(tmp)) as server:
        bench = open_bench(opts, Path(tmp), server)
        try:
            info = settings(opts, bench.concurrency)
            info["lag_share"] = opts.lag_share
            systems = tuple({s.name: s for s, _ in todo}.values())
            progress(f"{len(todo)} pairs; calibrating" if not opts.events else "measuring")
            cal = tuple(calibrate(bench, todo)) if not opts.events else ()
            rounds = tuple(tuple(r) for r in measure_rounds(bench, opts, todo))
            results = Results(info, systems, rounds, cal, None, "")
            lag, note = lag_run(bench, results, opts)
            info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            results = Results(info, systems, rounds, cal, lag, note)
        finally:
            bench.client.close()
    document = results.as_json()
    print(json.dumps(document, indent=2) if opts.json else table(results))
    if opts.save:
        save_results(document, "peers")
    return 0 if all(t.met is not False for t in results.targets()) else 1
