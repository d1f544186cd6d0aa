"""Compact dedupe and done marks: how an event id is found in its source's time buckets.

The marks of a source are small hashes per time bucket (``lua/marks.lua`` documents the
layout and does every read and write, atomically with the commit or the outcome that
needs it). This module holds the Python side: the digest that turns an event id into a
shard number (which sub-hash) and a field (12 bytes), and a reader for tools and tests.

A 128-bit BLAKE2b digest: 32 bits choose the sub-hash, 96 bits are the field. Two ids
of one source share a mark only if all 128 bits agree; at 1,000 new events a second
and a 3-day window, the chance that any new event in a year is taken for a duplicate
of another is about 10^-10.
"""

from __future__ import annotations

import enum
import hashlib

import redis

from hookline.config.defaults import DEFAULT_DEDUPE_WINDOW
from hookline.redis import keys
from hookline.redis.scripts import load_script

#: Buckets per marks window (lua/marks.lua's MARKS_BUCKETS): a bucket lasts half the
#: window, and a mark is kept at most that much longer than the window.
BUCKETS_PER_WINDOW = 2

_STATE = load_script("marks_state")


class MarkState(enum.IntEnum):
    """What the marks say about an event."""

    UNSEEN = 0
    SEEN = 1
    DONE = 2


def marks_window(dedupe_window: float) -> float:
    """Seconds a source's marks are kept, in buckets of half of it: the longer of its
    dedupe window (the receiver's duplicates) and the 3 days a done mark lives (an event
    done is not run again, whatever brings it back)."""
    return max(dedupe_window, DEFAULT_DEDUPE_WINDOW)


def digest(event_id: str) -> tuple[int, bytes]:
    """The shard number and the field of ``event_id`` in its source's marks."""
    value = hashlib.blake2b(event_id.encode(), digest_size=16).digest()
    return int.from_bytes(value[:4], "big"), value[4:]


def fingerprint_mark(fingerprint: bytes) -> tuple[int, bytes]:
    """The shard number and the field of a signed body's fingerprint (a SHA-256 digest,
    already uniform: its first 16 bytes serve as they are)."""
    return int.from_bytes(fingerprint[:4], "big"), fingerprint[4:16]


def mark_state(client: redis.Redis, source: str, event_id: str, dedupe_window: float) -> MarkState:
    """The state of ``event_id`` of ``source`` (whose dedupe window is ``dedupe_window``)."""
    return _state(client, source, digest(event_id), dedupe_window)


def replay_state(
    client: redis.Redis, source: str, fingerprint: bytes, dedupe_window: float
) -> MarkState:
    """Whether a signed body of ``source`` with this fingerprint was accepted (``SEEN``)."""
    return _state(client, source, fingerprint_mark(fingerprint), dedupe_window)


def _state(
    client: redis.Redis, source: str, mark: tuple[int, bytes], dedupe_window: float
) -> MarkState:
    window = int(marks_window(dedupe_window) * 1000)
    raw = _STATE(client, [keys.marks(source)], [window, *mark])
    return MarkState(int(raw or 0))


def count_states(client: redis.Redis, source: str) -> dict[MarkState, int]:
    """How many marks of ``source`` are in each state (a scan of all of them: for tools,
    tests and benchmarks, not for a hot path)."""
    found = {MarkState.SEEN: 0, MarkState.DONE: 0}
    for key in client.scan_iter(match=keys.marks(source) + ":*", count=1000):
        for value in client.hvals(key):
            state = MarkState(int(value))
            found[state] = found.get(state, 0) + 1
    return found
