"""HMAC schemes that sign a timestamp ahead of the body.

- ``t=<unix>,v1=<hex>`` in one header over ``{t}.{body}``: Stripe, Calendly, Mux; Paddle
  spells it ``ts=<unix>;h1=<hex>`` over ``{ts}:{body}``. Several signatures may be listed
  during a secret's rotation; other fields are ignored.
- ``v0=<hex>`` over ``v0:{timestamp}:{body}`` with the timestamp in its own header: Slack
  and Zoom (Zoom's ``endpoint.url_validation`` handshake is answered here).
- Twitch EventSub: ``sha256=<hex>`` over ``{message id}{timestamp}{body}``, an RFC 3339
  timestamp, and the ``webhook_callback_verification`` handshake.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar

import orjson

from hookline.errors import TimestampError
from hookline.ingest.schemes.base import (
    Answer,
    HmacScheme,
    Key,
    Read,
    SigningKey,
    check_age,
    decode,
    header,
    unix_seconds,
    wire_bytes,
)


class Stripe(HmacScheme):
    """Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`` over ``{t}.{body}``."""

    name = "stripe"
    header_prefixes = ("stripe-",)
    default_id = ("body:id",)
    uses_timestamp = True
    label = "v1"
    signature_header = "Stripe-Signature"
    #: Separates the fields of the signature header.
    separator: ClassVar[str] = ","
    #: The field carrying the timestamp.
    timestamp_field: ClassVar[str] = "t"
    #: What joins the timestamp to the body in the signed bytes.
    joiner: ClassVar[str] = "."

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature header; the id travels in the body."""
        signed = f"{timestamp}{self.joiner}".encode()
        digest = self.digest(self.hmac_key(key), signed, body).hex()
        value = f"{self.timestamp_field}={timestamp}{self.separator}{self.label}={digest}"
        return {self.signature_header: value}

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        timestamps, candidates = [], []
        version, ts_field = self.label, self.timestamp_field
        for item in header(headers, self.signature_header).split(self.separator):
            field, _, value = item.strip().partition("=")
            if field == ts_field:
                timestamps.append(value)
            elif field == version and (raw := decode(value, "hex")) is not None:
                candidates.append(raw)  # other schemes (v0, ...) are ignored
        if not timestamps:
            raise TimestampError(f"no {ts_field}= timestamp in the {self.signature_header} header")
        stamp = unix_seconds(timestamps[0], tolerance=tolerance, now=now)
        return stamp + self.joiner.encode(), candidates


class Calendly(Stripe):
    """Calendly: ``Calendly-Webhook-Signature: t=<unix>,v1=<hex>`` over ``{t}.{body}``."""

    name = "calendly"
    header_prefixes = ("calendly-",)
    default_id = ("body:created_at",)
    default_type = ("body:event",)
    signature_header = "Calendly-Webhook-Signature"


class Mux(Stripe):
    """Mux: ``Mux-Signature: t=<unix>,v1=<hex>[,v1=…]`` over ``{t}.{body}``."""

    name = "mux"
    header_prefixes = ("mux-",)
    signature_header = "Mux-Signature"


class Paddle(Stripe):
    """Paddle Billing: ``Paddle-Signature: ts=<unix>;h1=<hex>[;h1=…]`` over ``{ts}:{body}``."""

    name = "paddle"
    header_prefixes = ("paddle-",)
    default_id = ("body:event_id",)
    default_type = ("body:event_type",)
    label = "h1"
    signature_header = "Paddle-Signature"
    separator = ";"
    timestamp_field = "ts"
    joiner = ":"


class Slack(HmacScheme):
    """Slack: ``X-Slack-Signature: v0=<hex>`` over ``v0:{timestamp}:{body}``."""

    name = "slack"
    header_prefixes = ("x-slack-",)
    default_id: ClassVar[tuple[str, ...]] = ("body:event_id",)
    default_type: ClassVar[tuple[str, ...]] = ("body:event.type", "body:type")
    uses_timestamp = True
    answers_handshakes = True
    label = "v0"
    signature_header = "X-Slack-Signature"
    timestamp_header: ClassVar[str] = "X-Slack-Request-Timestamp"

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature and timestamp headers; the id travels in the body."""
        digest = self.digest(self.hmac_key(key), f"v0:{timestamp}:".encode(), body)
        return {self.signature_header: f"v0={digest.hex()}", self.timestamp_header: str(timestamp)}

    def handshake(self, body: bytes, headers: Mapping[str, str], key: Key) -> Answer | None:
        """Echo the Events API's ``url_verification`` challenge."""
        payload = _json_object(body)
        if payload is None or payload.get("type") != "url_verification":
            return None
        challenge = payload.get("challenge", "")
        return Answer(200, orjson.dumps({"challenge": challenge}), "application/json")

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        version, _, value = header(headers, self.signature_header).partition("=")
        raw_ts = header(headers, self.timestamp_header, TimestampError)
        if self.uses_timestamp:
            timestamp = unix_seconds(raw_ts, tolerance=tolerance, now=now)
        else:
            timestamp = wire_bytes(raw_ts, self.timestamp_header)
        raw = decode(value, "hex") if version == "v0" else None
        return b"v0:" + timestamp + b":", [] if raw is None else [raw]


class Zoom(Slack):
    """Zoom: ``x-zm-signature: v0=<hex>`` over ``v0:{timestamp}:{body}``.

    Zoom documents no replay window, so the timestamp is signed but its age not checked.
    """

    name = "zoom"
    header_prefixes = ("x-zm-",)
    default_id = ("header:x-zm-trackingid", "body:event_ts")
    default_type = ("body:event",)
    uses_timestamp = False
    signature_header = "x-zm-signature"
    timestamp_header = "x-zm-request-timestamp"

    def handshake(self, body: bytes, headers: Mapping[str, str], key: Key) -> Answer | None:
        """Answer ``endpoint.url_validation`` with the token and its HMAC (hex)."""
        payload = _json_object(body)
        if payload is None or payload.get("event") != "endpoint.url_validation":
            return None
        inner = payload.get("payload")
        token = inner.get("plainToken") if isinstance(inner, dict) else None
        if not isinstance(token, str) or not isinstance(key, bytes):
            return Answer(
                400, b'{"error":"url_validation without a plainToken"}', "application/json"
            )
        encrypted = hmac.new(key, token.encode(), "sha256").hexdigest()
        answer = {"plainToken": token, "encryptedToken": encrypted}
        return Answer(200, orjson.dumps(answer), "application/json")


class Twitch(HmacScheme):
    """Twitch EventSub: ``sha256=<hex>`` over ``{message id}{timestamp}{body}``."""

    name = "twitch"
    header_prefixes = ("twitch-eventsub-",)
    default_id = ("header:twitch-eventsub-message-id",)
    default_type = ("header:twitch-eventsub-subscription-type",)
    uses_timestamp = True
    tolerance = 600.0  # EventSub: "reject any message whose timestamp is older than 10 minutes"
    answers_handshakes = True
    label = "sha256"
    signature_header = "Twitch-Eventsub-Message-Signature"
    id_header: ClassVar[str] = "Twitch-Eventsub-Message-Id"
    signed_headers = ("twitch-eventsub-message-id", "twitch-eventsub-message-timestamp")
    timestamp_header: ClassVar[str] = "Twitch-Eventsub-Message-Timestamp"
    type_header: ClassVar[str] = "Twitch-Eventsub-Message-Type"

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the id, timestamp, type and signature headers of a notification."""
        stamp = _rfc3339(timestamp)
        digest = self.digest(self.hmac_key(key), f"{msg_id}{stamp}".encode(), body)
        return {
            self.id_header: msg_id,
            self.timestamp_header: stamp,
            self.type_header: "notification",
            self.signature_header: f"sha256={digest.hex()}",
        }

    def handshake(self, body: bytes, headers: Mapping[str, str], key: Key) -> Answer | None:
        """Echo the ``webhook_callback_verification`` challenge as plain text."""
        if headers.get(self.type_header) != "webhook_callback_verification":
            return None
        payload = _json_object(body)
        challenge = payload.get("challenge") if payload is not None else None
        if not isinstance(challenge, str):
            return Answer(400, b'{"error":"verification without a challenge"}', "application/json")
        return Answer(200, challenge.encode(), "text/plain")

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        msg_id = wire_bytes(header(headers, self.id_header), self.id_header)
        raw_ts = header(headers, self.timestamp_header, TimestampError)
        check_age(_parse_rfc3339(raw_ts), tolerance=tolerance, now=now)
        version, _, value = header(headers, self.signature_header).partition("=")
        raw = decode(value, "hex") if version == "sha256" else None
        return msg_id + raw_ts.encode("ascii"), [] if raw is None else [raw]


def _rfc3339(timestamp: int) -> str:
    """Unix seconds as Twitch writes them: UTC, nanoseconds, ``Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def _parse_rfc3339(raw: str) -> float:
    """Unix seconds of an RFC 3339 time with any number of fractional digits.

    Raises:
        TimestampError: when ``raw`` is not such a time.
    """
    text = raw.strip()
    if not text.isascii() or len(text) > 40:
        raise TimestampError("malformed timestamp: expected an RFC 3339 time")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most 6 fractional digits: drop the rest
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[: min(digits, 6)] + rest[digits:]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimestampError("malformed timestamp: expected an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise TimestampError("malformed timestamp: an RFC 3339 time needs its offset")
    return parsed.timestamp()


def _json_object(body: bytes) -> dict[str, object] | None:
    """The body as a JSON object, or ``None``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None
