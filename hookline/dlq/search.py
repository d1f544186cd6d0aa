"""Filtered pages of dead letters, found server-side without reading them all.

A search walks one time-of-death index (the event type's when the type is given
exactly, else the source's, else the global one, the smallest that applies) inside the
time bounds, from a cursor, in a Lua script that checks the remaining criteria on each
entry's short search text (never the whole entry) and returns only the matches. The
cost of a page is the number of entries it passes over, not the number there are; a
cursor is a position in time, so entries removed meanwhile (by a replay or a purge)
shift nothing.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from hookline.dlq.store import DeadLetter, DeadLetters
from hookline.redis import keys
from hookline.redis.connection import as_str
from hookline.redis.scripts import load_script

#: Most entries one server-side step passes over (bounds how long Redis is busy).
SCAN_STEP = 2000

#: The page script (``hookline/redis/lua/dlq_page.lua``).
_PAGE_SCRIPT = load_script("dlq_page")

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_GLOB = frozenset("*?")


def _lower(text: str) -> str:
    # ASCII only, as Lua's string.lower on the server: both sides agree on every match.
    return text.translate(_ASCII_LOWER)


def glob_match(glob: str, text: str) -> bool:
    """Whether all of ``text`` matches ``glob`` (``*`` any run, ``?`` any one character).

    Only the last ``*`` is ever returned to (an earlier one could not place what follows
    any better), so a match takes at most ``len(glob) * len(text)`` steps: a pattern such
    as ``*a*a*a*a*b`` cannot keep Redis or the console busy the way a backtracking regex
    would. The Lua twin in the page script gives the same answers.
    """
    g = t = 0
    star, mark = -1, 0
    while t < len(text):
        if g < len(glob) and glob[g] == "*":
            star, mark = g, t
            g += 1
        elif g < len(glob) and glob[g] in ("?", text[t]):
            g += 1
            t += 1
        elif star >= 0:
            mark += 1
            g, t = star + 1, mark
        else:
            return False
    return glob[g:].strip("*") == ""


@dataclass(frozen=True, slots=True)
class Filter:
    """Which dead letters an operation concerns; every criterion given must hold.

    Attributes:
        source: the event's source, exactly.
        type: the event's type, exactly or as a glob (``invoice.*``, ``?`` one character).
        error: a substring of the error type or message (ASCII case-insensitive).
        since: died at or after this unix time.
        until: died at or before this unix time.
    """

    source: str | None = None
    type: str | None = None
    error: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def empty(self) -> bool:
        """Whether the filter selects every dead letter."""
        return not (self.source or self.type or self.error or self.timed)

    @property
    def timed(self) -> bool:
        """Whether a time bound is set."""
        return self.since is not None or self.until is not None

    @property
    def type_is_glob(self) -> bool:
        """Whether ``type`` is a pattern rather than one type."""
        return bool(self.type) and not _GLOB.isdisjoint(self.type or "")

    def bounds(self) -> tuple[str, str]:
        """The score range of the time bounds, as Redis reads it."""
        low = "-inf" if self.since is None else repr(self.since)
        high = "+inf" if self.until is None else repr(self.until)
        return low, high

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes, by the same rules as the server-side walk."""
        env = letter.envelope
        if self.source and env.source != self.source:
            return False
        if self.type and not glob_match(self.type, env.type):
            return False
        if self.since is not None and letter.dead_at < self.since:
            return False
        if self.until is not None and letter.dead_at > self.until:
            return False
        if self.error:
            needle = _lower(self.error)
            return needle in _lower(letter.error_type) or needle in _lower(letter.error_message)
        return True


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a walk stopped: the last entry passed over, and its score as Redis wrote it."""

    score: str
    member: str

    def token(self) -> str:
        """A compact text form, for a URL or a command line."""
        return f"{self.score}~{self.member}"

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """Read :meth:`token` output.

        Raises:
            ValueError: when ``token`` is not a cursor.
        """
        score, sep, member = token.partition("~")
        try:
            float(score)
        except ValueError:
            sep = ""
        if not sep or not member:
            raise ValueError(f"not a dead-letter cursor: {token!r}")
        return cls(score, member)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a walk.

    Attributes:
        items: what was found: dead letters, ids or stored JSON, by the method called.
        next: where to continue, or ``None`` when the walk reached the end.
        scanned: how many entries were passed over to find them.
    """

    items: list[Any]
    next: Cursor | None
    scanned: int


class Search:
    """Filtered, cursor-paged walks over the dead-letter indexes."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self.client: redis.Redis = dead_letters.client

    def _plan(self, flt: Filter) -> tuple[str, bool, bool]:
        """The index to walk, and whether source and type remain to be checked."""
        exact_type = bool(flt.type) and not flt.type_is_glob
        if flt.source and exact_type:
            type_index = keys.dlq_type_index(flt.type or "")
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.dlq_source_index(flt.source))
                pipe.zcard(type_index)
                by_source, by_type = pipe.execute()
            if by_type < by_source:
                return type_index, True, False
        if flt.source:
            return keys.dlq_source_index(flt.source), False, bool(flt.type)
        if exact_type:
            return keys.dlq_type_index(flt.type or ""), False, False
        return keys.dlq_index(), False, bool(flt.type)

    def _walk(
        self,
        flt: Filter,
        after: Cursor | None,
        limit: int,
        newest_first: bool,
        ids_only: bool,
        max_scan: int | None,
    ) -> Page:
        index, check_source, check_type = self._plan(flt)
        low, high = flt.bounds()
        needle = _lower(flt.error or "")
        found: list[Any] = []
        scanned, cursor = 0, after
        while len(found) < limit:
            step = SCAN_STEP if max_scan is None else min(SCAN_STEP, max_scan - scanned)
            if step <= 0:
                break
            reply = _PAGE_SCRIPT(
                self.client,
                [index, keys.dlq_search()],
                [
                    low,
                    high,
                    cursor.score if cursor else "",
                    cursor.member if cursor else "",
                    limit - len(found),
                    step,
                    1 if newest_first else 0,
                    (flt.source or "") if check_source else "",
                    (flt.type or "") if check_type else "",
                    needle,
                    keys.dlq_entry(""),
                    1 if ids_only else 0,
                ],
            )
            more, score, member, passed, *items = reply
            scanned += int(passed)
            found += items
            cursor = Cursor(as_str(score), as_str(member)) if int(more) else None
            if cursor is None:
                break
        return Page(found, cursor, scanned)

    def page(
        self,
        flt: Filter | None = None,
        *,
        after: Cursor | None = None,
        limit: int = 50,
        newest_first: bool = True,
        max_scan: int | None = None,
    ) -> Page:
        """Up to ``limit`` dead letters matching ``flt``, continuing after ``after``.

        Args:
            flt: the filter (default: everything).
            after: the previous page's ``next`` (default: start from the newest, or the
                oldest when ``newest_first`` is false).
            limit: most entries on the page.
            newest_first: the order of the walk.
            max_scan: most entries passed over before a short page is returned with a
                cursor to go on from (default: no limit); bounds what a rare match costs.
        """
        page = self._walk(flt or Filter(), after, limit, newest_first, False, max_scan)
        letters = [DeadLetter.from_dict(orjson.loads(raw)) for raw in page.items]
        return Page(letters, page.next, page.scanned)

    def page_raw(
        self,
        flt: Filter | None = None,
        *,
        after: Cursor | None = None,
        limit: int = 500,
        newest_first: bool = True,
    ) -> Page:
        """As :meth:`page`, each entry as stored: the JSON bytes of ``DeadLetter.to_dict``."""
        return self._walk(flt or Filter(), after, limit, newest_first, False, None)

    def page_ids(
        self,
        flt: Filter | None = None,
        *,
        after: Cursor | None = None,
        limit: int = 500,
        newest_first: bool = True,
    ) -> Page:
        """As :meth:`page`, only the ids."""
        page = self._walk(flt or Filter(), after, limit, newest_first, True, None)
        return Page([as_str(i) for i in page.items], page.next, page.scanned)

    def count(self, flt: Filter | None = None) -> tuple[int, bool]:
        """How many dead letters match ``flt``, from indexes and counters only.

        Returns:
            ``(count, exact)``: when a criterion cannot be counted without reading the
            entries (an error substring; a type or source within time bounds, beyond
            the one index walked) the count is an upper bound and ``exact`` is false.
        """
        flt = flt or Filter()
        if flt.type and not flt.timed and not flt.error:
            # The ``source/type`` counters answer exactly, globs included.
            total = 0
            for key, value in self.client.hgetall(keys.dlq_counts("type")).items():
                source, _, event_type = as_str(key).partition("/")
                if (not flt.source or source == flt.source) and glob_match(flt.type, event_type):
                    total += max(int(value), 0)
            return total, True
        index, check_source, check_type = self._plan(flt)
        low, high = flt.bounds()
        total = int(self.client.zcount(index, low, high))
        return total, not (flt.error or check_source or check_type)
