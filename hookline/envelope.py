"""The event envelope: what the receiver stores and what a worker runs.

An envelope is serialised as JSON (orjson), never pickle. The raw body is kept
byte-exact: as text when it is valid UTF-8, else base64.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import orjson

from hookline.errors import EnvelopeError

#: Envelope format version, bumped on incompatible changes.
VERSION = 1


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8, with the bytes that were not UTF-8 written as ``\\xNN``.

    aiohttp decodes header bytes with ``surrogateescape``: a header that is not UTF-8
    arrives as a string with lone surrogates, which no JSON encoder accepts.
    """
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no decoder made: written as its code point
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One received event, exactly as it arrived, plus where it came from.

    Attributes:
        source: name of the configured source that received it.
        id: the provider's event id (the dedupe key within the source).
        type: the provider's event type.
        received_at: unix time at which the receiver accepted it.
        headers: the request headers that matter, names lower-cased.
        body: the raw request body.
        queue: the queue it was enqueued to.
        attempts: records of failed attempts so far (empty on first delivery).
    """

    source: str
    id: str
    type: str
    received_at: float
    headers: dict[str, str]
    body: bytes
    queue: str
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form of the envelope, for people: the body as text when it is
        UTF-8, else base64."""
        try:
            text, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        return self._fields(text, encoding)

    def to_json(self) -> bytes:
        """Serialise to JSON bytes, as stored in jobs: the body as text when it is ASCII,
        else base64.

        Text that is not ASCII would make a round trip through Python's wide strings
        (decode, then orjson encoding it back to UTF-8), which cost the receiver more
        than base64 does. :meth:`from_json` reads both forms.
        """
        body = self.body
        if body.isascii():
            return orjson.dumps(self._fields(body.decode("ascii"), "utf-8"))
        return orjson.dumps(self._fields(base64.b64encode(body).decode("ascii"), "base64"))

    def _fields(self, body: str, encoding: str) -> dict[str, Any]:
        return {
            "v": VERSION,
            "source": self.source,
            "id": self.id,
            "type": self.type,
            "received_at": self.received_at,
            "headers": self.headers,
            "body": body,
            "encoding": encoding,
            "queue": self.queue,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        """Rebuild an envelope from :meth:`to_dict` output.

        Raises:
            EnvelopeError: when a field is missing or of the wrong type.
        """
        try:
            if data["encoding"] == "base64":
                body = base64.b64decode(data["body"], validate=True)
            elif data["encoding"] == "utf-8":
                body = data["body"].encode("utf-8")
            else:
                raise EnvelopeError(f"unknown body encoding {data['encoding']!r}")
            return cls(
                source=str(data["source"]),
                id=str(data["id"]),
                type=str(data["type"]),
                received_at=float(data["received_at"]),
                headers={str(k): str(v) for k, v in data["headers"].items()},
                body=body,
                queue=str(data["queue"]),
                attempts=list(data.get("attempts") or []),
            )
        except (KeyError, TypeError, AttributeError, ValueError, binascii.Error) as exc:
            raise EnvelopeError(f"not a hookline envelope: {exc!r}") from exc

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        """Parse JSON produced by :meth:`to_json`."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"envelope is not JSON: {exc}") from exc
        return cls.from_dict(data)

    def json(self) -> Any:
        """The body parsed as JSON (raises ``orjson.JSONDecodeError`` if it is not JSON)."""
        return orjson.loads(self.body)
