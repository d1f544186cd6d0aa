"""Support for console tests: dead letters to look at, and reading the console's pages."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from typing import Any

import orjson
import redis

from hookline.dlq.store import DeadLetter, DeadLetters
from hookline.envelope import Envelope
from tests.conftest import SOURCES

#: The console token every console test configures.
TOKEN = "console-token-for-tests-4f9b2c"


def kill(
    client: redis.Redis,
    event_id: str,
    *,
    source: str = "stripe",
    event_type: str = "invoice.paid",
    error: str = "ConnectionError",
    message: str = "upstream refused the connection",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    at: float | None = None,
    attempts: int = 2,
) -> DeadLetter:
    """Dead-letter an event of ``source`` after ``attempts`` failures, as a worker would."""
    queue = str(SOURCES.get(source, {}).get("queue", "hookline"))
    records: list[dict[str, Any]] = [
        {
            "at": time.time() - attempts + n,
            "error_type": error,
            "message": f"{message} (attempt {n + 1})",
            "traceback": f"Traceback (most recent call last):\n  handler\n{error}: {message}",
            "worker": "worker-1",
            "seconds": 0.01,
        }
        for n in range(attempts)
    ]
    envelope = Envelope(
        source,
        event_id,
        event_type,
        time.time(),
        headers or {"content-type": "application/json", "user-agent": "Stripe/1.0"},
        body if body is not None else orjson.dumps({"id": event_id, "type": event_type}),
        queue,
        records,
    )
    return DeadLetters(client).add(envelope, reason="exhausted", worker="worker-1", now=at)


class _Tables(HTMLParser):
    """Collects the text of each cell of each row of each table with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or None
            if self._table:
                self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._table and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(html: str, table_id: str) -> list[list[str]]:
    """The rows (cell texts) of the table with ``id=table_id``, header row included."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables[table_id]


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def listed_event_ids(html: str) -> list[str]:
    """The event ids on a dead-letter list page, in order."""
    return [row[4] for row in table(html, "letters")[1:] if len(row) > 4]
