"""Dead letters in files: export them as JSON Lines, re-inject an export later.

An export line is an entry exactly as stored (``DeadLetter.to_dict``): everything needed
to put the event back, with its attempts for the record. An export is written under a
temporary name and renamed once complete, so an interrupted export never leaves a half
file under the name asked for.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import orjson

from hookline.dlq.ops import (
    MAX_STEP,
    Pacer,
    Progress,
    Selection,
    StopCheck,
    fresh_envelope,
    id_batches,
    step_for,
)
from hookline.dlq.search import Filter, Search
from hookline.dlq.store import DeadLetter, DeadLetters
from hookline.errors import ExportFileError, HooklineError
from hookline.redis import keys
from hookline.redis.commit import Enqueuer, Pending


def read_export(path: str | Path) -> Iterator[DeadLetter]:
    """The dead letters of an export file (JSON Lines), in order; blank lines are skipped.

    Raises:
        ExportFileError: at the first line that is not an exported dead letter.
    """
    with Path(path).open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield DeadLetter.from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, HooklineError, KeyError, TypeError, ValueError) as exc:
                raise ExportFileError(
                    f"{path}, line {number}: not an exported dead letter ({exc})"
                ) from None


class Reinject:
    """Put the dead letters of an export file back into their queues, paced.

    An entry still in the dead-letter queue is replayed from there (atomically, by id);
    one that is not (purged, or replayed and dead no more) has its envelope enqueued
    afresh with no attempts. Either way the workers' done markers make an event that
    has meanwhile succeeded a no-op. Running it again after an interruption enqueues
    again the entries no longer dead, which the done markers also make harmless. The file
    is read twice: once here, to check every line and count the entries, then by :meth:`run`.
    """

    def __init__(
        self,
        dead_letters: DeadLetters,
        path: str | Path,
        flt: Filter | None = None,
        *,
        rate: float | None = None,
        limit: int | None = None,
    ) -> None:
        self.dead_letters = dead_letters
        self.path = Path(path)
        self.filter = flt or Filter()
        self.rate = rate
        self.limit = limit
        total = len({letter.id for letter in self.entries()})
        self.progress = Progress(total if limit is None else min(total, limit), True)

    def entries(self) -> Iterator[DeadLetter]:
        """The file's entries that pass the filter, each id once, up to the limit."""
        seen: set[str] = set()
        for letter in read_export(self.path):
            if letter.id in seen or not self.filter.matches(letter):
                continue
            if self.limit is not None and len(seen) >= self.limit:
                return
            seen.add(letter.id)
            yield letter

    def plan(self, size: int = 500) -> Iterator[tuple[list[DeadLetter], list[bool]]]:
        """The entries in batches, each with whether it is still a dead letter (a dry run)."""
        batch: list[DeadLetter] = []
        for letter in itertools.chain(self.entries(), [None]):
            if letter is not None:
                batch.append(letter)
            if batch and (letter is None or len(batch) == size):
                with self.dead_letters.client.pipeline(transaction=False) as pipe:
                    for entry in batch:
                        pipe.exists(keys.dlq_entry(entry.id))
                    present = [bool(p) for p in pipe.execute()]
                yield batch, present
                batch = []

    def run(
        self, on_step: Callable[[int], None] | None = None, should_stop: StopCheck = lambda: False
    ) -> Progress:
        """Work through the file until the end or ``should_stop()``; as :meth:`Bulk.run`."""
        progress, enqueuer = self.progress, Enqueuer(self.dead_letters.client)
        step, pacer = step_for(self.rate), Pacer(self.rate)
        progress.started = pacer.started
        batch: list[DeadLetter] = []
        try:
            for letter in self.entries():
                batch.append(letter)
                if len(batch) < step:
                    continue
                if not self._step(batch, pacer, enqueuer, should_stop, on_step):
                    break
                batch = []
            else:
                if batch:
                    self._step(batch, pacer, enqueuer, should_stop, on_step)
        except BaseException:
            progress.interrupted = True
            raise
        finally:
            progress.ended = time.monotonic()
        return progress

    def _step(
        self,
        batch: list[DeadLetter],
        pacer: Pacer,
        enqueuer: Enqueuer,
        should_stop: StopCheck,
        on_step: Callable[[int], None] | None,
    ) -> bool:
        progress = self.progress
        if should_stop():
            progress.interrupted = True
            return False
        moved = set(self.dead_letters.replay([letter.id for letter in batch]))
        fresh = [Pending(fresh_envelope(letter), 0.0) for letter in batch if letter.id not in moved]
        if fresh:
            enqueuer.commit(fresh)
        progress.done += len(moved)
        progress.enqueued += len(fresh)
        pacer.wait(progress.handled, should_stop)
        if on_step is not None:
            on_step(len(batch))
        return True


class ByteWriter(Protocol):
    """Where an export is written: anything with a ``write(bytes)``."""

    def write(self, data: bytes, /) -> object:
        """Write ``data``."""


def export(
    dead_letters: DeadLetters, selection: Selection, out: ByteWriter
) -> tuple[int, list[str]]:
    """Write the selected entries to ``out`` as JSON Lines, oldest first (ids: in order).

    Each line is an entry as stored (``DeadLetter.to_dict``), enough to re-inject it.

    Returns:
        how many were written, and the ids named that are not dead letters.
    """
    written, missing = 0, []
    client = dead_letters.client
    if selection.ids:
        for ids in id_batches(dead_letters, selection, MAX_STEP):
            for entry, raw in zip(ids, client.mget([keys.dlq_entry(i) for i in ids]), strict=True):
                if raw is None:
                    missing.append(entry)
                else:
                    out.write((raw if isinstance(raw, bytes) else str(raw).encode()) + b"\n")
                    written += 1
        return written, missing
    search, cursor = Search(dead_letters), None
    left = selection.limit
    while left is None or left > 0:
        want = 500 if left is None else min(500, left)
        page = search.page_raw(selection.filter, after=cursor, limit=want, newest_first=False)
        for raw in page.items:
            out.write(raw + b"\n")
        written += len(page.items)
        left = None if left is None else left - len(page.items)
        if page.next is None:
            break
        cursor = page.next
    return written, missing


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that appears under ``path`` only once fully written and synced.

    It is written under a temporary name in the same directory (readable by the owner
    only: dead letters carry customer data) and renamed at the end; on any error or
    interruption the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
