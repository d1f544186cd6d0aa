"""Events/s, CPU and memory of one hookline worker process next to Dramatiq, Celery, arq and RQ.

One run, one machine, one private redis-server (a free port, appendfsync everysec,
emptied before every run), the same ~1.4 KB Stripe ``invoice.paid`` JSON payload (a
distinct id each), ONE worker process per system:

  hookline   `hookline work --processes 1`, jobs committed as its receiver does
             (hookline.redis.commit.Enqueuer, --batch events a job);
             workers.concurrency 8, and 200 for the async handler, where the key exists
  Dramatiq   `dramatiq --processes 1 --threads 8` (its default threads), Redis broker
  Celery     `celery worker --pool threads --concurrency 8`, Redis broker, acks late
  arq        `arq`, its default max_jobs (10), and max_jobs 200 for the async handler
  RQ         `rq worker`, SimpleWorker and the default forking Worker

Handlers: (a) one Redis INCR; (b) wait 10 ms, then INCR: time.sleep on threads
(b-sync), asyncio.sleep for arq and a hookline async handler (b-async). Each system
works off a queue filled beforehand; a run is timed from its first job's start to its
last INCR as read from the counter in Redis, never from the systems' own statistics.
A short calibration run of every pair sizes the measured runs to last --seconds; the
pairs are then measured round after round, interleaved, and medians reported, with
each ratio taken within a round. Last, the end-to-end lag (receiver accepted -> handler
started) of `hookline serve` + one `hookline work` process under wrk at half of
hookline's best rate. Results go to bench/results/peers-*.json; the issue's targets
are printed met or not. The peers come from the `bench` extra (`./run bench peers`
installs it); without it, --systems can still choose hookline and RQ.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Run the benchmark; 0 when every target it could measure is met, else 1."""
    from bench.peers.main import run

    return run(argv, __doc__ or "")
