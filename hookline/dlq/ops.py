"""What an operator does with the dead-letter queue: select, replay, purge, export, re-inject.

Shared by ``hookline dlq`` and the console (files: :mod:`hookline.dlq.files`; finding
entries: :mod:`hookline.dlq.search`). Bulk operations move entries in small
steps, each one atomic (:meth:`DeadLetters.replay` / :meth:`DeadLetters.delete`), paced
to a rate over the whole run, so that an interruption at any point loses nothing and
doubles nothing, and running the same operation again continues where it stopped.
Selections by filter are walked oldest first with their end fixed at the start, so an
event that dies again while its replay runs is not replayed twice by the same run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from hookline.config.settings import parse_duration
from hookline.dlq.search import Filter, Search
from hookline.dlq.store import DeadLetter, DeadLetters, entry_id
from hookline.envelope import Envelope
from hookline.errors import DeadLetterError, FilterError

#: Most entries moved or removed in one atomic step.
MAX_STEP = 200
#: Longest single sleep while pacing, so that a stop request is seen quickly.
PACE_TICK = 0.2
# A bare number at least this large is a unix time rather than a duration in seconds.
_TIMESTAMP_FLOOR = 1e9
#: The latest time a filter may name: the end of year 9999, the last a date shows.
MAX_TIME = 253_402_300_799.0

StopCheck = Callable[[], bool]


def parse_when(text: str, now: float) -> float:
    """A point in time: ``2h`` (that long ago), an ISO date/time (UTC unless given), unix time.

    Raises:
        FilterError: when ``text`` is none of those, or names a time before 1970 or after
            9999 (``1e300``, ``inf``, ``nan``, ``999999999d``): nothing died then, and such
            a time cannot be shown.
    """
    text = text.strip()
    found: float | None = None
    with contextlib.suppress(ValueError):
        if float(text) >= _TIMESTAMP_FLOOR:
            found = float(text)
    if found is None:
        with contextlib.suppress(ValueError):
            found = now - parse_duration(text)
    if found is None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise FilterError(
                f"{text!r} is not a time: use a duration such as 30m, 2h or 3d, "
                "a date such as 2024-05-01T10:00 (UTC unless an offset is given), or unix time"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        found = moment.timestamp()
    if not 0 <= found <= MAX_TIME:  # also false for nan
        raise FilterError(f"{text[:40]!r} is out of range: name a time between 1970 and 9999")
    return found


def make_filter(
    *,
    source: str | None = None,
    type: str | None = None,
    error: str | None = None,
    since: str | None = None,
    until: str | None = None,
    now: float | None = None,
) -> Filter:
    """A :class:`Filter` from text as typed by an operator (empty strings mean "any").

    Raises:
        FilterError: when a time cannot be read or ``since`` is after ``until``.
    """
    now = time.time() if now is None else now
    low = parse_when(since, now) if since else None
    high = parse_when(until, now) if until else None
    if low is not None and high is not None and low > high:
        raise FilterError("--since is later than --until: nothing can match")
    return Filter(source or None, type or None, error or None, low, high)


@dataclass(frozen=True, slots=True)
class Selection:
    """The dead letters a bulk operation acts on: named ids, or a filter (and a limit).

    Attributes:
        ids: entries named by id (then the filter must be empty).
        filter: entries matching it, when no ids are named.
        limit: at most this many entries (``None``: all).
    """

    ids: tuple[str, ...] = ()
    filter: Filter = field(default_factory=Filter)
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.ids and not self.filter.empty:
            raise ValueError("select by ids or by a filter, not both")

    def frozen(self, now: float | None = None) -> Selection:
        """This selection with its end fixed at ``now``: later deaths are not included."""
        now = time.time() if now is None else now
        until = self.filter.until
        if self.ids or (until is not None and until <= now):
            return self
        return replace(self, filter=replace(self.filter, until=now))


def count(dead_letters: DeadLetters, selection: Selection) -> tuple[int, bool]:
    """How many entries ``selection`` covers, from counters: ``(count, exact)``."""
    if selection.ids:
        total, exact = len(dict.fromkeys(selection.ids)), False
    else:
        total, exact = Search(dead_letters).count(selection.filter)
    if selection.limit is not None and selection.limit < total:
        return selection.limit, exact
    return total, exact


def id_batches(dead_letters: DeadLetters, selection: Selection, size: int) -> Iterator[list[str]]:
    """The selected ids, ``size`` at a time, oldest first for a filter.

    Each batch is read when asked for, after the previous one was acted on: the walk
    continues from a position in time, so removing entries meanwhile shifts nothing.
    """
    if selection.ids:
        ids = list(dict.fromkeys(selection.ids))[: selection.limit]
        for start in range(0, len(ids), size):
            yield ids[start : start + size]
        return
    search, cursor = Search(dead_letters), None
    left = selection.limit
    while left is None or left > 0:
        want = size if left is None else min(size, left)
        page = search.page_ids(selection.filter, after=cursor, limit=want, newest_first=False)
        if page.items:
            yield page.items
            left = None if left is None else left - len(page.items)
        if page.next is None:
            return
        cursor = page.next


def step_for(rate: float | None) -> int:
    """Entries per atomic step: about ten steps a second at ``rate``; large steps without."""
    if rate is None:
        return MAX_STEP
    return max(1, min(MAX_STEP, int(rate / 10)))


class Pacer:
    """Keeps work at or under ``rate`` items per second, measured from the start of the run.

    Call :meth:`wait` after each step: the first step goes at once, and the run as a
    whole takes at least ``items / rate`` seconds however the steps are sized.
    """

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.started = clock()

    def wait(self, done: int, should_stop: StopCheck = lambda: False) -> None:
        """Sleep until ``done`` items are within the rate, or until a stop is asked."""
        if not self.rate:
            return
        due = self.started + done / self.rate
        while not should_stop():
            delay = due - self.clock()
            if delay <= 0:
                return
            self.sleep(min(delay, PACE_TICK))


@dataclass
class Progress:
    """How far a bulk operation has got; safe to read from another thread while it runs.

    Attributes:
        total: entries expected (an upper bound unless ``exact``).
        exact: whether ``total`` is exact.
        done: entries replayed (moved back to their queue) or removed.
        enqueued: entries of a file no longer dead, enqueued afresh (re-injection only).
        gone: selected entries already gone when their turn came (replayed or purged by
            someone else, or by an earlier run).
        missing: ids named that are not dead letters.
        interrupted: whether it stopped before the end.
    """

    total: int
    exact: bool
    done: int = 0
    enqueued: int = 0
    gone: int = 0
    missing: list[str] = field(default_factory=list)
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def handled(self) -> int:
        """Entries dealt with so far, whatever became of them."""
        return self.done + self.enqueued + self.gone + len(self.missing)

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until the end)."""
        return (self.ended or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        """Entries replayed, enqueued or removed per second so far."""
        elapsed = self.elapsed
        return (self.done + self.enqueued) / elapsed if elapsed > 0 else 0.0


class Bulk:
    """Replay or purge a selection in paced atomic steps; :meth:`run` it once."""

    def __init__(
        self,
        dead_letters: DeadLetters,
        selection: Selection,
        *,
        purge: bool = False,
        rate: float | None = None,
        now: float | None = None,
    ) -> None:
        self.dead_letters = dead_letters
        self.selection = selection.frozen(now)
        self.purge = purge
        self.rate = None if purge else rate
        total, exact = count(dead_letters, self.selection)
        self.progress = Progress(total, exact)

    def run(
        self, on_step: Callable[[int], None] | None = None, should_stop: StopCheck = lambda: False
    ) -> Progress:
        """Work until the selection is exhausted or ``should_stop()``; returns the progress.

        ``on_step`` is called with the number of entries each step handled. An exception
        (Redis gone, Ctrl-C) propagates; :attr:`progress` then says how far it got.
        """
        progress = self.progress
        action = self.dead_letters.delete if self.purge else self.dead_letters.replay
        pacer = Pacer(self.rate)
        progress.started = pacer.started
        try:
            for ids in id_batches(self.dead_letters, self.selection, step_for(self.rate)):
                if should_stop():
                    progress.interrupted = True
                    break
                acted = action(ids)
                progress.done += len(acted)
                if len(acted) < len(ids):
                    acted_set = set(acted)
                    left = [i for i in ids if i not in acted_set]
                    if self.selection.ids:
                        progress.missing += left
                    else:
                        progress.gone += len(left)
                pacer.wait(progress.handled, should_stop)
                if on_step is not None:
                    on_step(len(ids))
        except BaseException:
            progress.interrupted = True
            raise
        finally:
            progress.ended = time.monotonic()
        return progress


@dataclass(frozen=True, slots=True)
class Stats:
    """Dead-letter counts from the counters, and the oldest and newest times of death."""

    total: int
    by_source: dict[str, int]
    by_type: dict[str, int]
    by_error: dict[str, int]
    oldest: float | None
    newest: float | None


def stats(dead_letters: DeadLetters) -> Stats:
    """Counts by source, ``source/type`` and error type (largest first): a few O(1) reads."""

    def ranked(counts: dict[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    span = dead_letters.oldest_newest()
    return Stats(
        total=dead_letters.count(),
        by_source=ranked(dead_letters.counts("source")),
        by_type=ranked(dead_letters.counts("type")),
        by_error=ranked(dead_letters.counts("error")),
        oldest=span[0] if span else None,
        newest=span[1] if span else None,
    )


def summary(letter: DeadLetter, now: float) -> dict[str, object]:
    """One entry as a flat JSON-ready row (what ``list --json`` prints)."""
    env = letter.envelope
    return {
        "id": letter.id,
        "dead_at": letter.dead_at,
        "age": round(max(now - letter.dead_at, 0.0), 3),
        "source": env.source,
        "type": env.type,
        "event_id": env.id,
        "queue": env.queue,
        "reason": letter.reason,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "attempts": len(env.attempts),
    }


def fresh_envelope(letter: DeadLetter) -> Envelope:
    """The envelope of ``letter`` with no attempts, as a replay enqueues it."""
    return replace(letter.envelope, attempts=[])


def find(
    dead_letters: DeadLetters,
    entry: str | None = None,
    *,
    event_id: str | None = None,
    source: str | None = None,
) -> DeadLetter:
    """The dead letter an operator names: by its id, as ``SOURCE:EVENT_ID``, or by event id.

    ``entry`` is tried as a dead-letter id, then (when it holds a colon) as
    ``SOURCE:EVENT_ID``, then as an event id of any source that has dead letters.
    ``event_id`` (with ``source``, or without: any source) names an event directly.
    One round trip reads every candidate.

    Raises:
        DeadLetterError: when nothing matches, or an event id matches in several sources
            (the message lists them as ``SOURCE:EVENT_ID``).
    """
    tiers: list[list[str]] = []
    wanted = event_id if event_id is not None else entry
    if wanted is None:
        raise DeadLetterError("name a dead letter: its id, SOURCE:EVENT_ID, or an event id")
    if event_id is None and source is None:
        tiers.append([wanted])
        if ":" in wanted:
            tiers.append([entry_id(*wanted.split(":", 1))])
    sources = [source] if source is not None else sorted(dead_letters.counts("source"))
    tiers.append([entry_id(name, wanted) for name in sources])
    found = {letter.id: letter for letter in dead_letters.get_many([i for t in tiers for i in t])}
    for tier in tiers:
        matches = [found[i] for i in dict.fromkeys(tier) if i in found]
        if len(matches) == 1:
            return matches[0]
        if matches:
            named = ", ".join(f"{m.envelope.source}:{m.envelope.id}" for m in matches)
            raise DeadLetterError(f"event id {wanted!r} is dead in several sources: {named}")
    where = f" of source {source!r}" if source is not None else ""
    raise DeadLetterError(f"no dead letter with id or event id {wanted!r}{where}")
