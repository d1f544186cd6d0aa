"""Read an event's id and type out of a verified request.

A locator is ``header:<name>`` or ``body:<dotted.path>``. A JSON body is read with
simdjson, which parses without building Python objects for what no locator asks for
(orjson built the whole tree of a typical 1.5 KB event only to read two fields).
A body simdjson refuses is parsed as before: orjson, or failing that, a form (Slack
slash commands).

Where a key appears twice in one JSON object, simdjson reads the first value and orjson
(a handler's ``event.json()``) the last: the receiver would deduplicate and route by
one id and type while the handler saw another. So a body that repeats a key on a
locator's path (the key it reads, in any object it walks through) is refused (400);
repeats elsewhere in the body do not matter. Bodies simdjson refuses are read by orjson
on both sides, which agree (the last value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
import simdjson

from hookline.errors import ExtractionError

#: Longest id or type accepted: it becomes part of a Redis key and of metrics labels.
MAX_FIELD_LENGTH = 256
#: Control characters, and the lone surrogates that stand for bytes that were not UTF-8
#: (headers are decoded with ``surrogateescape``): nothing a provider means as an id.
_UNREADABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: A UTF-8 byte order mark.
_BOM = b"\xef\xbb\xbf"
#: The types of a JSON object and array in a simdjson document.
_LazyObject = simdjson.Object
_LazyArray = simdjson.Array
#: Marks a document not parsed yet (``None`` is a JSON value).
_UNREAD = object()


@dataclass(frozen=True, slots=True)
class Locator:
    """Where a value is found: a header, or a path of keys into the body's JSON object.

    Parsed once at start-up, so a request only walks it.
    """

    #: As configured: ``header:<name>`` or ``body:<dotted.path>``.
    text: str
    #: The header's name, or ``None`` for a body locator.
    header: str | None
    #: The keys from the body's top-level object down to the value (body locators); a key
    #: of digits also indexes an array (``0.sg_event_id``: the first element's id).
    path: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Locator:
        """Parse ``header:<name>`` or ``body:<dotted.path>`` (checked by the settings)."""
        kind, _, where = text.partition(":")
        if kind == "header":
            return cls(text, where, ())
        return cls(text, None, tuple(where.split(".")))

    def __str__(self) -> str:
        return self.text

    def find(self, body: Any, root_keys: list[str] | None = None) -> Any:
        """The value at this locator's path in a parsed ``body``, or ``None``.

        ``body`` is a dict (orjson, forms) or a :class:`simdjson.Object`; ``root_keys``,
        if given, the keys of a simdjson ``body`` (duplicates included), read once for
        every locator of a request.

        Raises:
            ExtractionError: when a simdjson object on the path holds the key twice.
        """
        value = body
        for key in self.path:
            if type(value) is _LazyObject:
                names = root_keys if value is body and root_keys is not None else list(value)
                if names.count(key) > 1:
                    raise ExtractionError(
                        f"the body repeats the key {key!r} in one object on the way to "
                        f"{self.text} (which of its values is meant is unclear); send it once"
                    )
                value = value.get(key)
            elif isinstance(value, dict):
                value = value.get(key)
            elif (
                (type(value) is _LazyArray or isinstance(value, list))
                and key.isascii()
                and key.isdigit()
            ):
                index = int(key)
                value = value[index] if index < len(value) else None
            else:
                return None
        return value


def locators(texts: Sequence[str]) -> tuple[Locator, ...]:
    """Parse each of ``texts``, in order."""
    return tuple(Locator.parse(text) for text in texts)


class RequestFields:
    """Lazily parsed view of a request for locators."""

    __slots__ = ("_body", "_headers", "_lazy", "_not_json", "_parsed", "_root_keys")

    def __init__(self, headers: Mapping[str, str], body: bytes) -> None:
        self._headers = headers
        self._body = body
        self._parsed: Any = None
        self._lazy: Any = _UNREAD
        #: The body turned out to be neither JSON nor a form.
        self._not_json = False
        #: The keys of a JSON body's top-level object, read once (see Locator.find).
        self._root_keys: list[str] | None = None

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
                    self._not_json = True
        return self._parsed

    def _document(self) -> Any:
        """The body for body locators: simdjson's lazy view, else :meth:`body`."""
        if self._lazy is _UNREAD:
            body = self._body
            try:
                if body.startswith(_BOM):  # simdjson skips one; orjson, and workers, do not
                    raise ValueError("byte order mark")
                self._lazy = simdjson.Parser().parse(body)
            except (ValueError, RuntimeError):  # not JSON, not UTF-8, or a number too wide
                self._lazy = self.body()
        return self._lazy

    def locate(self, locator: Locator) -> str | None:
        """The value ``locator`` points at, as a non-empty string, or ``None``."""
        if locator.header is not None:
            value: Any = self._headers.get(locator.header)
        else:
            document = self._document()
            if type(document) is _LazyObject:
                if self._root_keys is None:
                    self._root_keys = list(document)
                value = locator.find(document, self._root_keys)
            else:
                value = locator.find(document)
        if isinstance(value, str):
            return value.strip() or None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None

    def first(self, where: Sequence[Locator], what: str) -> str:
        """The first locator that yields a value.

        Raises:
            ExtractionError: when none does, or the value is too long or not UTF-8 text.
        """
        for locator in where:
            value = self.locate(locator)
            if value is not None:
                if len(value) > MAX_FIELD_LENGTH:
                    raise ExtractionError(f"event {what} longer than {MAX_FIELD_LENGTH} characters")
                if not (value.isascii() and value.isprintable()) and _UNREADABLE.search(value):
                    raise ExtractionError(
                        f"event {what} holds control characters or bytes that are not UTF-8"
                    )
                return value
        looked = ", ".join(map(str, where))
        if self._not_json and any(locator.header is None for locator in where):
            raise ExtractionError(
                f"event {what} not found: the body is not JSON (nor a form), so no body "
                f"field can be read (looked at {looked})"
            )
        raise ExtractionError(f"event {what} not found (looked at {looked})")
