"""The dead-letter queue: events that could not succeed, kept until an operator acts.

Storage (keys in :mod:`hookline.redis.keys`): each dead letter is one JSON string; a sorted
set indexes all of them by the time they died, and one per source and one per event
type do the same; three hashes count them by source, by ``source/type`` and by error
type; one hash holds each entry's short search text (source, type, error type and
message, lower-cased), so a filtered walk never reads whole entries to test them. The
scripts that add and remove entries keep all of it exact. Nothing expires unless a
retention is configured. Filtered pages over these indexes are in :mod:`hookline.dlq.search`.

A dead letter's id is derived from its source and event id, so the same event dead
twice is one entry, and moving an entry back to its queue is one atomic script: a
replay interrupted anywhere loses nothing and doubles nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from hookline.envelope import Envelope
from hookline.errors import DeadLetterError
from hookline.redis import keys
from hookline.redis.connection import as_str
from hookline.redis.jobs import job_layout
from hookline.redis.scripts import load_script

# The scripts (hookline/redis/lua/dlq_*.lua) keep the counters and indexes exact; they
# share their first KEYS (the counters, the index) and ARGV (the key layout below).
_ADD = load_script("dlq_add")
_REPLAY = load_script("dlq_replay")
_DELETE = load_script("dlq_delete")


def entry_id(source: str, event_id: str) -> str:
    """The dead letter id of an event: stable, short, safe to type in a shell."""
    return hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead event and why it died.

    Attributes:
        id: the dead letter id (see :func:`entry_id`).
        dead_at: unix time it was dead-lettered.
        reason: ``exhausted`` (out of attempts), ``permanent`` or ``unhandled``.
        error_type: the last error's class name.
        error_message: the last error's message.
        worker: the worker that ran the last attempt.
        envelope: the event, with every attempt's record in ``envelope.attempts``.
    """

    id: str
    dead_at: float
    reason: str
    error_type: str
    error_message: str
    worker: str
    envelope: Envelope

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (also the stored form)."""
        return {
            "id": self.id,
            "dead_at": self.dead_at,
            "reason": self.reason,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "worker": self.worker,
            "envelope": self.envelope.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> DeadLetter:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            id=str(data["id"]),
            dead_at=float(data["dead_at"]),
            reason=str(data["reason"]),
            error_type=str(data["error_type"]),
            error_message=str(data["error_message"]),
            worker=str(data["worker"]),
            envelope=Envelope.from_dict(data["envelope"]),
        )


def _counter_keys() -> list[str]:
    return [keys.dlq_counts("source"), keys.dlq_counts("type"), keys.dlq_counts("error")]


_LAYOUT = [
    keys.dlq_entry(""),
    keys.dlq_source_index(""),
    keys.dlq_type_index(""),
    keys.dlq_search(),
]


class DeadLetters:
    """The Python API over the dead-letter queue: add, list, fetch, replay, delete."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def add(
        self,
        envelope: Envelope,
        *,
        reason: str,
        worker: str,
        lease: tuple[str, str] | None = None,
        now: float | None = None,
        pipe: redis.client.Pipeline | None = None,
    ) -> DeadLetter:
        """Dead-letter ``envelope`` (its ``attempts`` hold the errors), atomically.

        Args:
            envelope: the event with every attempt recorded.
            reason: ``exhausted``, ``permanent`` or ``unhandled``.
            worker: the worker that gives up on it.
            lease: (lease key, owner) released in the same step, if held.
            now: the time of death (default: now).
            pipe: a pipeline to queue the write on (bulk loads), instead of running it; it
                needs no script loaded on the server.
        """
        last = envelope.attempts[-1] if envelope.attempts else {}
        letter = DeadLetter(
            id=entry_id(envelope.source, envelope.id),
            dead_at=time.time() if now is None else now,
            reason=reason,
            error_type=str(last.get("error_type", reason)),
            error_message=str(last.get("message", "")),
            worker=worker,
            envelope=envelope,
        )
        script_keys = [*_counter_keys(), keys.dlq_index(), keys.dlq_entry(letter.id)]
        args: list[Any] = [*_LAYOUT, letter.id, letter.dead_at, orjson.dumps(letter.to_dict())]
        if lease is not None:
            script_keys.append(lease[0])
            args.append(lease[1])
        if pipe is None:
            _ADD(self.client, script_keys, args)
        else:
            # The caller executes the pipeline (a bulk load, the worker's outcome write),
            # where nothing would load the script again had Redis lost it: send it whole.
            _ADD.queue_source(pipe, script_keys, args)
        return letter

    def get(self, entry: str) -> DeadLetter:
        """Fetch one dead letter.

        Raises:
            DeadLetterError: when there is no entry with that id.
        """
        raw = self.client.get(keys.dlq_entry(entry))
        if raw is None:
            raise DeadLetterError(f"no dead letter with id {entry!r}")
        return DeadLetter.from_dict(orjson.loads(raw))

    def get_many(self, ids: Sequence[str]) -> list[DeadLetter]:
        """Fetch several dead letters in one round trip, skipping ids that are gone."""
        if not ids:
            return []
        raws = self.client.mget([keys.dlq_entry(i) for i in ids])
        return [DeadLetter.from_dict(orjson.loads(raw)) for raw in raws if raw is not None]

    def count(self, source: str | None = None) -> int:
        """How many dead letters there are (of one source)."""
        index = keys.dlq_source_index(source) if source else keys.dlq_index()
        return int(self.client.zcard(index))

    def counts(self, dimension: str) -> dict[str, int]:
        """Non-zero counts by ``source``, ``type`` (``source/type``) or ``error`` type."""
        raw = self.client.hgetall(keys.dlq_counts(dimension))
        return {as_str(k): int(v) for k, v in raw.items() if int(v) > 0}

    def oldest_newest(self) -> tuple[float, float] | None:
        """Times of death of the oldest and newest dead letters, or ``None`` when empty."""
        first = self.client.zrange(keys.dlq_index(), 0, 0, withscores=True)
        last = self.client.zrange(keys.dlq_index(), -1, -1, withscores=True)
        if not first or not last:
            return None
        return float(first[0][1]), float(last[0][1])

    def scan(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        newest_first: bool = True,
        chunk: int = 500,
    ) -> Iterator[DeadLetter]:
        """Iterate dead letters by time of death, reading ``chunk`` at a time.

        Only the ids of one chunk and their entries are in memory at once.
        """
        index = keys.dlq_source_index(source) if source else keys.dlq_index()
        low = "-inf" if since is None else since
        high = "+inf" if until is None else until
        offset = 0
        while True:
            if newest_first:
                ids = self.client.zrevrangebyscore(index, high, low, start=offset, num=chunk)
            else:
                ids = self.client.zrangebyscore(index, low, high, start=offset, num=chunk)
            if not ids:
                return
            yield from self.get_many([as_str(i) for i in ids])
            if len(ids) < chunk:
                return
            offset += chunk

    def replay(self, ids: Sequence[str]) -> list[str]:
        """Move entries back to their queues with a fresh set of attempts, atomically.

        Returns the ids that were moved (ids already gone are skipped, so a replay
        run again after an interruption continues where it stopped).
        """
        if not ids:
            return []
        moved = _REPLAY(
            self.client,
            [*_counter_keys(), keys.dlq_index(), keys.RQ_QUEUES, keys.dlq_replays()],
            [*_LAYOUT, *job_layout(), *ids],
        )
        return [as_str(m) for m in moved]

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Remove entries for good; returns the ids that existed."""
        if not ids:
            return []
        removed = _DELETE(self.client, [*_counter_keys(), keys.dlq_index()], [*_LAYOUT, *ids])
        return [as_str(m) for m in removed]

    def expire(self, older_than: float) -> int:
        """Delete dead letters that died before ``older_than`` (retention); returns how many."""
        removed = 0
        while True:
            ids = self.client.zrangebyscore(keys.dlq_index(), "-inf", older_than, start=0, num=500)
            if not ids:
                return removed
            removed += len(self.delete([as_str(i) for i in ids]))
