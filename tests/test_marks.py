"""Compact dedupe marks (``lua/marks.lua``): small hashes per source and time bucket.

The window is never shorter than configured and at most one bucket longer; every
sub-hash stays small enough for Redis's compact encoding, a burst included; a mark costs
tens of bytes, not a key. Marks are kept at least 3 days (a done mark's life); the tests
of the bucket math hand the scripts a window of under a second instead, to run in real
time (``short_marks``).
"""

from __future__ import annotations

import time

import pytest
import redis

from hookline.envelope import Envelope
from hookline.redis import commit, keys, marks
from hookline.redis.commit import Enqueuer, Outcome, Pending
from hookline.redis.connection import as_str
from hookline.redis.marks import BUCKETS_PER_WINDOW, MarkState, mark_state

#: A window of 0.8 s: buckets of 400 ms.
WINDOW = 0.8
SPAN = WINDOW / BUCKETS_PER_WINDOW


@pytest.fixture
def short_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Marks kept as long as the dedupe window itself, however short."""
    monkeypatch.setattr(commit, "marks_window", lambda window: window)
    monkeypatch.setattr(marks, "marks_window", lambda window: window)


def _pending(event_id: str, window: float = WINDOW, source: str = "s") -> Pending:
    env = Envelope(source, event_id, "t", time.time(), {}, b"{}", "hookline")
    return Pending(env, window)


def _sub_hashes(r: redis.Redis, source: str = "s") -> list[str]:
    return [as_str(k) for k in r.scan_iter(match=keys.marks(source) + ":*", count=1000)]


@pytest.mark.usefixtures("short_marks")
class TestWindow:
    def test_a_duplicate_is_refused_for_the_whole_window_and_forgotten_one_bucket_after(
        self, r: redis.Redis
    ) -> None:
        """A delivered id is a duplicate at every look until its window has passed (buckets
        included), and is forgotten no later than one bucket after the window."""
        enqueuer = Enqueuer(r)
        marked = time.monotonic()
        assert enqueuer.commit([_pending("evt_w")]) == [Outcome.ENQUEUED]
        looks = 0
        while (elapsed := time.monotonic() - marked) < WINDOW - 0.05:
            assert enqueuer.commit([_pending("evt_w")]) == [Outcome.DUPLICATE], elapsed
            looks += 1
            time.sleep(0.03)
        assert looks >= 10
        time.sleep(max(0.0, marked + WINDOW + SPAN + 0.05 - time.monotonic()))
        assert mark_state(r, "s", "evt_w", WINDOW) == MarkState.UNSEEN
        assert enqueuer.commit([_pending("evt_w")]) == [Outcome.ENQUEUED]

    def test_every_bucket_expires_as_a_whole_within_one_bucket_of_the_window(
        self, r: redis.Redis
    ) -> None:
        """Each sub-hash of a bucket carries an expiry no longer than window + one bucket."""
        Enqueuer(r).commit([_pending(f"evt_{i}", 60.0) for i in range(50)])
        ttls = [r.pttl(key) for key in _sub_hashes(r)]
        longest = 60_000 * (1 + 1 / BUCKETS_PER_WINDOW)
        assert ttls and all(60_000 - 1_000 < ttl <= longest for ttl in ttls), ttls

    def test_marks_of_two_sources_or_two_windows_are_apart(self, r: redis.Redis) -> None:
        """The same id in another source is no duplicate; a source's marks are read with
        its own window."""
        enqueuer = Enqueuer(r)
        assert enqueuer.commit([_pending("evt_x", source="a")]) == [Outcome.ENQUEUED]
        assert enqueuer.commit([_pending("evt_x", source="b")]) == [Outcome.ENQUEUED]
        assert mark_state(r, "a", "evt_x", WINDOW) == MarkState.SEEN
        assert mark_state(r, "c", "evt_x", WINDOW) == MarkState.UNSEEN


class TestMarksWindow:
    def test_marks_are_kept_three_days_however_short_the_dedupe_window(
        self, r: redis.Redis
    ) -> None:
        """With a one-minute dedupe window, a mark's bucket still lives 3 days (plus at most
        one bucket), so that a done event is never run again within them."""
        Enqueuer(r).commit([_pending("evt_short", 60.0)])
        [bucket] = _sub_hashes(r)
        days3 = 3 * 86400_000
        assert days3 - 60_000 < r.pttl(bucket) <= days3 * (1 + 1 / BUCKETS_PER_WINDOW)


class TestCompactness:
    def test_a_burst_grows_new_sub_hashes_and_every_one_stays_compact(self, r: redis.Redis) -> None:
        """5,000 ids into one fresh bucket: the bucket grows generations of sub-hashes as
        it fills, each stays in Redis's compact listpack encoding, and every id is still
        found (all 5,000 come back as duplicates)."""
        enqueuer = Enqueuer(r)
        ids = [f"evt_burst_{i}" for i in range(5000)]
        for start in range(0, len(ids), 250):
            outcomes = enqueuer.commit([_pending(i, 60.0) for i in ids[start : start + 250]])
            assert outcomes == [Outcome.ENQUEUED] * 250
        subs = _sub_hashes(r)
        assert {as_str(r.object("encoding", key)) for key in subs} == {"listpack"}
        assert max(int(r.hlen(key)) for key in subs) <= 128
        generations = {key.split(":")[-2] for key in subs}
        assert len(generations) > 1, "a fresh bucket that filled did not grow"
        for start in range(0, len(ids), 250):
            outcomes = enqueuer.commit([_pending(i, 60.0) for i in ids[start : start + 250]])
            assert outcomes == [Outcome.DUPLICATE] * 250

    @pytest.mark.usefixtures("short_marks")
    def test_the_next_bucket_opens_sized_from_the_last_ones_count(self, r: redis.Redis) -> None:
        """A bucket opens with as many sub-hashes as its predecessor's count needs (one
        generation), so a steady source's marks need one look per bucket."""
        enqueuer = Enqueuer(r)
        window = 1.0
        span = window / BUCKETS_PER_WINDOW
        enqueuer.commit([_pending(f"evt_a{i}", window) for i in range(2000)])
        time.sleep(span - time.time() % span + 0.02)  # into the next bucket
        enqueuer.commit([_pending("evt_next", window)])
        meta = {as_str(k): as_str(v) for k, v in r.hgetall(keys.marks("s")).items()}
        sizes = sorted(v for k, v in meta.items() if k.endswith(":s"))
        assert "32" in sizes, meta  # 2,000 marks / 64 per sub-hash, a power of two

    def test_a_mark_costs_tens_of_bytes(self, r: redis.Redis) -> None:
        """20,000 marks, their sub-hashes and the meta hash included, take under 40 bytes
        each by Redis's own account (MEMORY USAGE); a key per event took over 200."""
        enqueuer = Enqueuer(r)
        for start in range(0, 20_000, 500):
            enqueuer.commit([_pending(f"evt_m{i}", 3600.0) for i in range(start, start + 500)])
        held = [keys.marks("s"), *_sub_hashes(r)]
        used = sum(int(r.memory_usage(key, samples=0) or 0) for key in held)
        assert used / 20_000 < 40, used / 20_000
