"""Every Redis key hookline uses, built in one place.

RQ's own keys (``rq:queue:*``, ``rq:job:*``, ``rq:queues``) keep RQ's names so that
``rq info`` and a stock ``rq worker -S json`` see hookline's queues and jobs.
"""

from __future__ import annotations

#: Prefix of every key that belongs to hookline itself.
PREFIX = "hookline"
#: RQ's prefixes, fixed by RQ.
RQ_QUEUE_PREFIX = "rq:queue:"
RQ_JOB_PREFIX = "rq:job:"
RQ_QUEUES = "rq:queues"


def rq_queue(queue: str) -> str:
    """The RQ list holding the job ids waiting in ``queue``."""
    return f"{RQ_QUEUE_PREFIX}{queue}"


def rq_job(job_id: str) -> str:
    """The RQ hash holding one job."""
    return f"{RQ_JOB_PREFIX}{job_id}"


def seen(source: str, event_id: str) -> str:
    """Receiver dedupe marker: set atomically with the job that carries the event."""
    return f"{PREFIX}:seen:{source}:{event_id}"


def done(source: str, event_id: str) -> str:
    """Worker done marker: the event's handler has succeeded."""
    return f"{PREFIX}:done:{source}:{event_id}"


def lease(source: str, event_id: str) -> str:
    """Worker lease: one worker at a time runs an event."""
    return f"{PREFIX}:lease:{source}:{event_id}"
