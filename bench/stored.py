"""Count what a receiver left in Redis, to check it against what wrk was told."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import orjson
import redis

from hookline.envelope import Envelope
from hookline.redis import keys

#: Job hashes read per round trip.
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Stored:
    """Events found in one queue."""

    events: int
    jobs: int
    #: Distinct event ids among them (``events`` when none was stored twice); ``None``
    #: when not read (the naive receiver's jobs are pickles).
    distinct: int | None


def hookline_events(client: redis.Redis, queue: str) -> Stored:
    """Every envelope carried by the RQ jobs waiting in ``queue``.

    Reads the jobs as ``tests.helpers.queued_envelopes`` does, pipelined, since a run
    leaves tens of thousands of them.
    """
    job_ids = cast(list[bytes], client.lrange(keys.rq_queue(queue), 0, -1))
    ids: list[str] = []
    for start in range(0, len(job_ids), _CHUNK):
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids[start : start + _CHUNK]:
            pipe.hget(keys.rq_job(job_id.decode()), "data")
        for data in cast(list[bytes | None], pipe.execute()):
            if data is None:
                continue  # a queued id without its job would be a bug; the counts show it
            _func, _instance, args, _kwargs = orjson.loads(data)
            ids.extend(Envelope.from_dict(item).id for item in args[0])
    return Stored(events=len(ids), jobs=len(job_ids), distinct=len(set(ids)))


def rq_jobs(client: redis.Redis, queue: str) -> Stored:
    """Jobs waiting in an RQ queue of one event each (the naive receiver's)."""
    jobs = client.llen(keys.rq_queue(queue))
    return Stored(events=jobs, jobs=jobs, distinct=None)
