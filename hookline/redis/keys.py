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


def marks(source: str) -> str:
    """A source's compact dedupe marks: the meta hash of its time buckets, and the
    prefix of their sub-hashes (:func:`marks_bucket`; ``lua/marks.lua``)."""
    return f"{PREFIX}:marks:{source}"


def marks_bucket(source: str, span_ms: int, bucket: int, generation: int, sub: int) -> str:
    """One sub-hash of a time bucket of a source's marks (``lua/marks.lua`` builds the
    same name from :func:`marks`): fields are digests of event ids, values states."""
    return f"{marks(source)}:{span_ms}:{bucket}:{generation}:{sub}"


def done(source: str, event_id: str) -> str:
    """Worker done marker: the event's handler has succeeded."""
    return f"{PREFIX}:done:{source}:{event_id}"


def lease(source: str, event_id: str) -> str:
    """Worker lease: one worker at a time runs an event."""
    return f"{PREFIX}:lease:{source}:{event_id}"


def retries() -> str:
    """Sorted set of events waiting for their next attempt (``source\nid``), by due time."""
    return f"{PREFIX}:retry"


def retry_envelopes() -> str:
    """Hash of the envelope of each event in :func:`retries`, by the same member."""
    return f"{PREFIX}:retry:envelopes"


def retry_member(source: str, event_id: str) -> str:
    """An event's member in :func:`retries`: one pending retry per event, never two."""
    return f"{source}\n{event_id}"


def crashes(source: str, event_id: str) -> str:
    """How many times a worker died while running an event's handler."""
    return f"{PREFIX}:crashes:{source}:{event_id}"


def worker_current(name: str) -> str:
    """The :func:`crashes` key of the event a worker is running (what to blame if it dies)."""
    return f"{PREFIX}:worker:{name}:current"


def workers() -> str:
    """Set of the names of registered workers."""
    return f"{PREFIX}:workers"


def worker(name: str) -> str:
    """A worker's heartbeat: exists while the worker is alive."""
    return f"{PREFIX}:worker:{name}"


def worker_jobs(name: str) -> str:
    """The list of job ids a worker has claimed and not yet finished."""
    return f"{PREFIX}:worker:{name}:jobs"


def ignored() -> str:
    """Hash counting events that had no handler, by source."""
    return f"{PREFIX}:ignored"


def dlq_index() -> str:
    """Sorted set of every dead letter id, scored by the time it died."""
    return f"{PREFIX}:dlq"


def dlq_source_index(source: str) -> str:
    """Sorted set of the dead letter ids of one source, scored by the time they died."""
    return f"{PREFIX}:dlq:source:{source}"


def dlq_type_index(event_type: str) -> str:
    """Sorted set of the dead letter ids of one event type, scored by the time they died."""
    return f"{PREFIX}:dlq:type:{event_type}"


def dlq_search() -> str:
    """Hash of each dead letter's search text: source, type, error type and message."""
    return f"{PREFIX}:dlq:search"


def dlq_entry(entry_id: str) -> str:
    """One dead letter, as JSON."""
    return f"{PREFIX}:dlq:entry:{entry_id}"


def dlq_replays() -> str:
    """Counter numbering the jobs that replays write (part of each replay job's id)."""
    return f"{PREFIX}:dlq:replays"


def dlq_counts(dimension: str) -> str:
    """Hash of dead-letter counts by ``dimension`` (``source``, ``type`` or ``error``)."""
    return f"{PREFIX}:dlq:count:{dimension}"


def audit() -> str:
    """Stream of the audit log: who replayed, purged or exported dead letters, and when."""
    return f"{PREFIX}:audit"


def broken_jobs() -> str:
    """List of ids of jobs whose data is not hookline's, set aside for inspection."""
    return f"{PREFIX}:broken-jobs"


def used_token(source: str, token: str) -> str:
    """A single-use token a source's provider signed (Mailgun's), remembered while its
    signed timestamp could still pass, so that a replayed request is refused."""
    return f"{PREFIX}:token:{source}:{token}"
