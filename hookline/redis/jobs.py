"""The RQ job hookline writes and reads, in one place.

A hookline job is a real RQ job (``rq info`` lists it; ``rq worker -S json`` can run
it): a hash whose ``data`` calls :data:`JOB_FUNC` with one argument, the list of the
envelopes the job carries. The write side is the Lua fragment ``lua/write_job.lua``
(every script that creates a job includes it) with the values defined here; the read
side is :func:`parse_job_data` and :func:`parse_rq_timestamp`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from hookline.envelope import Envelope
from hookline.redis import keys

#: The function every hookline job calls, importable by a stock RQ worker.
JOB_FUNC = "hookline.workers.jobs.process"
#: RQ job timeout written into each job (seconds); hookline's own worker uses its own.
JOB_TIMEOUT = 600

_RQ_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def rq_timestamp(when: datetime | None = None) -> str:
    """A time in RQ's own string format (a job's ``created_at`` and ``enqueued_at``)."""
    return (when or datetime.now(UTC)).strftime(_RQ_TIME)


def parse_rq_timestamp(value: str) -> float | None:
    """The unix time of a time in RQ's format (with or without microseconds), else ``None``."""
    for fmt in (_RQ_TIME, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def job_layout() -> list[Any]:
    """The five ARGV values that ``lua/job_layout.lua`` reads, for a script that writes
    jobs by queue name and job id: the queue and job key prefixes (from
    :mod:`hookline.redis.keys`), the created time, the function and the timeout."""
    return [keys.RQ_QUEUE_PREFIX, keys.RQ_JOB_PREFIX, rq_timestamp(), JOB_FUNC, JOB_TIMEOUT]


def parse_job_data(data: bytes) -> list[Envelope]:
    """The envelopes carried by a hookline RQ job's ``data`` field.

    Raises:
        orjson.JSONDecodeError, ValueError, TypeError, IndexError: when ``data`` is not
            a hookline job's (the worker sets such a job aside).
        hookline.errors.EnvelopeError: when an envelope in it is not one.
    """
    _func, _instance, args, _kwargs = orjson.loads(data)
    return [Envelope.from_dict(item) for item in args[0]]
