"""Read an event's id and type out of a verified request.

A locator is ``header:<name>`` or ``body:<dotted.path>``; the body is parsed once,
as JSON or, failing that, as a form (Slack slash commands).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson

from hookline.errors import ExtractionError

#: Longest id or type accepted: it becomes part of a Redis key and of metrics labels.
MAX_FIELD_LENGTH = 256
#: Control characters, and the lone surrogates that stand for bytes that were not UTF-8
#: (headers are decoded with ``surrogateescape``): nothing a provider means as an id.
_UNREADABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class RequestFields:
    """Lazily parsed view of a request for locators."""

    __slots__ = ("_body", "_headers", "_parsed")

    def __init__(self, headers: Mapping[str, str], body: bytes) -> None:
        self._headers = headers
        self._body = body
        self._parsed: Any = None

    def body(self) -> Any:
        """The body as JSON, else as a form (first value of each field), else ``{}``."""
        if self._parsed is None:
            try:
                self._parsed = orjson.loads(self._body)
            except orjson.JSONDecodeError:
                try:
                    text = self._body.decode("utf-8")
                    form = parse_qs(text, keep_blank_values=True, strict_parsing=True)
                    self._parsed = {k: v[0] for k, v in form.items()}
                except (UnicodeDecodeError, ValueError):
                    self._parsed = {}
        return self._parsed

    def locate(self, locator: str) -> str | None:
        """The value ``locator`` points at, as a non-empty string, or ``None``."""
        kind, _, where = locator.partition(":")
        value: Any
        if kind == "header":
            value = self._headers.get(where)
        else:
            value = self.body()
            for part in where.split("."):
                if not isinstance(value, dict):
                    return None
                value = value.get(part)
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        text = str(value).strip()
        return text or None

    def first(self, locators: Sequence[str], what: str) -> str:
        """The first locator that yields a value.

        Raises:
            ExtractionError: when none does, or the value is too long or not UTF-8 text.
        """
        for locator in locators:
            value = self.locate(locator)
            if value is not None:
                if len(value) > MAX_FIELD_LENGTH:
                    raise ExtractionError(f"event {what} longer than {MAX_FIELD_LENGTH} characters")
                if not (value.isascii() and value.isprintable()) and _UNREADABLE.search(value):
                    raise ExtractionError(
                        f"event {what} holds control characters or bytes that are not UTF-8"
                    )
                return value
        raise ExtractionError(f"event {what} not found (looked at {', '.join(locators)})")
