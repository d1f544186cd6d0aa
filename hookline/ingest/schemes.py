"""Webhook signature schemes: one verifier and signer per provider, behind one interface.

Every scheme is an HMAC over some bytes the provider puts ahead of the raw body (an id, a
timestamp, or nothing), so one digest method serves both :meth:`Scheme.verify` and
:meth:`Scheme.sign`; the tests and ``hookline send`` exercise the very code the receiver
verifies with. Verification always works on the raw request bytes.
"""

from __future__ import annotations

import abc
import base64
import functools
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar, TypeAlias

from hookline.errors import TimestampError, VerificationError

#: Hash algorithms the generic ``hmac`` scheme accepts.
ALGORITHMS = ("sha1", "sha256", "sha512")
#: Signature encodings the generic ``hmac`` scheme accepts.
ENCODINGS = ("hex", "base64")

#: What a scheme reads from headers: the bytes signed ahead of the body, candidate signatures.
_Read: TypeAlias = tuple[bytes, list[bytes]]


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes, algorithm: str) -> hmac.HMAC:
    """An HMAC that has taken ``key`` and nothing else: a copy of it starts each digest.

    Keying hashes two padded blocks; copying a keyed state skips that on every request.
    The few configured secrets stay cached; ``maxsize`` bounds keys seen only in signing.
    """
    return hmac.new(key, digestmod=algorithm)


def _encode(digest: bytes, encoding: str) -> str:
    """Render a raw digest as the provider sends it."""
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")


def _decode(value: str, encoding: str) -> bytes | None:
    """Decode one candidate signature to raw bytes, or ``None`` if it is malformed."""
    try:
        return bytes.fromhex(value) if encoding == "hex" else base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error is one; so is any non-ASCII input
        return None


def _header(
    headers: Mapping[str, str], name: str, error: type[VerificationError] = VerificationError
) -> str:
    """Return a required header's value, raising ``error`` when it is absent."""
    value = headers.get(name)
    if value is None:
        raise error(f"missing {name} header")
    return value


def _wire_bytes(value: str, name: str) -> bytes:
    """Return the bytes a provider sent (and signed) for a header value.

    aiohttp decodes header bytes as UTF-8 with ``surrogateescape``; undoing that recovers
    the exact bytes on the wire.
    """
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise VerificationError(f"malformed {name} header") from None


def _timestamp(raw: str, *, tolerance: float, now: float) -> bytes:
    """Check unix seconds against ``now`` ± ``tolerance`` and return them as signed bytes."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 15):
        raise TimestampError("malformed timestamp: expected unix seconds")
    age = now - int(raw)
    if age > tolerance:
        raise TimestampError(f"timestamp is {age:.0f} s old, beyond the {tolerance:g} s tolerance")
    if -age > tolerance:
        raise TimestampError(
            f"timestamp is {-age:.0f} s in the future, beyond the {tolerance:g} s tolerance"
        )
    return raw.encode("ascii")


class Scheme(abc.ABC):
    """A provider's signature scheme: turns secrets into keys, verifies and signs requests."""

    #: Name used in configuration.
    name: ClassVar[str]
    #: Lower-case header-name prefixes worth keeping in the stored envelope.
    header_prefixes: ClassVar[tuple[str, ...]]
    #: Where the event id is found, tried in order: ``header:<name>`` or ``body:<json.path>``.
    default_id: ClassVar[tuple[str, ...]]
    #: Where the event type is found, tried in order.
    default_type: ClassVar[tuple[str, ...]] = ("body:type",)
    #: Whether requests carry a signed timestamp checked against a tolerance.
    uses_timestamp: ClassVar[bool] = False
    #: The header carrying the signature(s).
    signature_header: str
    #: What a signature is called in error messages ("v1", "v0", ...).
    label: ClassVar[str] = "HMAC"
    #: Hash algorithm of the HMAC.
    algorithm: str = "sha256"

    def key(self, secret: str) -> bytes:
        """Return the HMAC key for a configured secret: its UTF-8 bytes unless overridden.

        Raises:
            ValueError: if the secret is empty or not encodable.
        """
        if not secret:
            raise ValueError("secret is empty")
        try:
            return secret.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("secret is not valid UTF-8 text") from None

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        keys: Sequence[bytes],
        *,
        tolerance: float,
        now: float,
    ) -> None:
        """Return if any of ``keys`` signed ``body`` as any signature in ``headers`` claims.

        Accepting any key against any signature is what lets secrets rotate; every
        comparison is constant-time.

        Raises:
            VerificationError: if a header is missing or malformed or no signature matches.
            TimestampError: if the timestamp is missing, malformed or off by more than
                ``tolerance`` seconds from ``now``, past or future.
        """
        signed, candidates = self._read(headers, tolerance=tolerance, now=now)
        if not candidates:
            raise VerificationError(
                f"no well-formed {self.label} signature in the {self.signature_header} header"
            )
        if not keys:
            raise VerificationError("no secret is configured to verify against")
        for key in keys:
            digest = self._digest(key, signed, body)
            for candidate in candidates:
                if hmac.compare_digest(digest, candidate):
                    return
        raise VerificationError(f"no {self.label} signature matched")

    @abc.abstractmethod
    def sign(self, body: bytes, key: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """Return the headers the provider would send with ``body``."""

    def _digest(self, key: bytes, signed: bytes, body: bytes) -> bytes:
        """The one digest sign and verify share: HMAC over ``signed`` then the raw body."""
        mac = _keyed(key, self.algorithm).copy()
        mac.update(signed)
        mac.update(body)  # not concatenated: bodies can be large
        return mac.digest()

    @abc.abstractmethod
    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float) -> _Read:
        """Return the bytes signed ahead of the body and the decoded candidate signatures."""


class StandardWebhooks(Scheme):
    """Standard Webhooks: space-separated ``v1,<base64>`` over ``{id}.{timestamp}.{body}``."""

    name = "standard-webhooks"
    header_prefixes = ("webhook-",)
    default_id = ("header:webhook-id",)
    uses_timestamp = True
    label = "v1"
    id_header: ClassVar[str] = "webhook-id"
    timestamp_header: ClassVar[str] = "webhook-timestamp"
    signature_header = "webhook-signature"

    def key(self, secret: str) -> bytes:
        """Base64-decode the secret after its ``whsec_`` prefix, tolerating missing padding.

        Raises:
            ValueError: if the secret is empty or not base64.
        """
        encoded = secret.removeprefix("whsec_")
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except ValueError:
            raise ValueError("secret is not valid base64 (after any whsec_ prefix)") from None
        if not key:
            raise ValueError("secret is empty")
        return key

    def sign(self, body: bytes, key: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """Return the id, timestamp and signature headers."""
        digest = self._digest(key, f"{msg_id}.{timestamp}.".encode(), body)
        return {
            self.id_header: msg_id,
            self.timestamp_header: str(timestamp),
            self.signature_header: f"v1,{_encode(digest, 'base64')}",
        }

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float) -> _Read:
        msg_id = _wire_bytes(_header(headers, self.id_header), self.id_header)
        entries = _header(headers, self.signature_header).split()
        raw_ts = _header(headers, self.timestamp_header, TimestampError)
        timestamp = _timestamp(raw_ts, tolerance=tolerance, now=now)
        candidates = []
        for entry in entries:  # other versions and malformed entries are skipped
            version, _, value = entry.partition(",")
            if version == "v1" and (raw := _decode(value, "base64")) is not None:
                candidates.append(raw)
        return msg_id + b"." + timestamp + b".", candidates


class Svix(StandardWebhooks):
    """Svix: Standard Webhooks under ``svix-`` header names."""

    name = "svix"
    header_prefixes = ("svix-",)
    default_id = ("header:svix-id",)
    id_header = "svix-id"
    timestamp_header = "svix-timestamp"
    signature_header = "svix-signature"


class Stripe(Scheme):
    """Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`` over ``{t}.{body}``."""

    name = "stripe"
    header_prefixes = ("stripe-",)
    default_id = ("body:id",)
    uses_timestamp = True
    label = "v1"
    signature_header = "Stripe-Signature"

    def sign(self, body: bytes, key: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """Return the ``Stripe-Signature`` header; Stripe carries the id in the body."""
        digest = self._digest(key, f"{timestamp}.".encode(), body)
        return {self.signature_header: f"t={timestamp},v1={digest.hex()}"}

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float) -> _Read:
        timestamps, candidates = [], []
        for item in _header(headers, self.signature_header).split(","):
            field, _, value = item.strip().partition("=")
            if field == "t":
                timestamps.append(value)
            elif field == "v1" and (raw := _decode(value, "hex")) is not None:
                candidates.append(raw)  # v0 and unknown schemes are ignored
        if not timestamps:
            raise TimestampError(f"no t= timestamp in the {self.signature_header} header")
        return _timestamp(timestamps[0], tolerance=tolerance, now=now) + b".", candidates


class Slack(Scheme):
    """Slack: ``X-Slack-Signature: v0=<hex>`` over ``v0:{timestamp}:{body}``."""

    name = "slack"
    header_prefixes = ("x-slack-",)
    default_id = ("body:event_id",)
    default_type = ("body:event.type", "body:type")
    uses_timestamp = True
    label = "v0"
    signature_header = "X-Slack-Signature"
    timestamp_header: ClassVar[str] = "X-Slack-Request-Timestamp"

    def sign(self, body: bytes, key: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """Return the signature and timestamp headers; Slack carries the id in the body."""
        digest = self._digest(key, f"v0:{timestamp}:".encode(), body)
        return {self.signature_header: f"v0={digest.hex()}", self.timestamp_header: str(timestamp)}

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float) -> _Read:
        version, _, value = _header(headers, self.signature_header).partition("=")
        raw_ts = _header(headers, self.timestamp_header, TimestampError)
        timestamp = _timestamp(raw_ts, tolerance=tolerance, now=now)
        raw = _decode(value, "hex") if version == "v0" else None
        return b"v0:" + timestamp + b":", [] if raw is None else [raw]


class Hmac(Scheme):
    """Generic HMAC over the raw body in one configurable header; no timestamp, no id."""

    name = "hmac"
    header_prefixes: ClassVar[tuple[str, ...]] = ()
    default_id: ClassVar[tuple[str, ...]] = ("body:id",)

    def __init__(
        self, header: str, *, prefix: str = "", encoding: str = "hex", algorithm: str = "sha256"
    ) -> None:
        """Configure the header name, value prefix (e.g. ``sha256=``), encoding and hash.

        Raises:
            ValueError: if the header is empty or the encoding or algorithm is unknown.
        """
        if not header:
            raise ValueError("the hmac scheme needs a signature header name")
        if encoding not in ENCODINGS:
            raise ValueError(
                f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}"
            )
        if algorithm not in ALGORITHMS:
            raise ValueError(
                f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
            )
        self.signature_header = header
        self.prefix = prefix
        self.encoding = encoding
        self.algorithm = algorithm

    def sign(self, body: bytes, key: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """Return the signature header; ``timestamp`` and ``msg_id`` are not sent."""
        digest = _encode(self._digest(key, b"", body), self.encoding)
        return {self.signature_header: self.prefix + digest}

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float) -> _Read:
        value = _header(headers, self.signature_header)
        if not value.startswith(self.prefix):
            raise VerificationError(
                f"the {self.signature_header} header lacks the {self.prefix!r} prefix"
            )
        raw = _decode(value[len(self.prefix) :], self.encoding)
        return b"", [] if raw is None else [raw]


class GitHub(Hmac):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body."""

    name = "github"
    header_prefixes = ("x-github-", "x-hub-")
    default_id = ("header:x-github-delivery",)
    default_type = ("header:x-github-event",)

    def __init__(self) -> None:
        """Fix the header, prefix and encoding GitHub uses."""
        super().__init__("X-Hub-Signature-256", prefix="sha256=")

    def sign(self, body: bytes, key: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """Return the signature and ``X-GitHub-Delivery`` headers."""
        headers = super().sign(body, key, timestamp=timestamp, msg_id=msg_id)
        return {**headers, "X-GitHub-Delivery": msg_id}


class Shopify(Hmac):
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64>`` over the raw body."""

    name = "shopify"
    header_prefixes = ("x-shopify-",)
    default_id = ("header:x-shopify-event-id", "header:x-shopify-webhook-id")
    default_type = ("header:x-shopify-topic",)

    def __init__(self) -> None:
        """Fix the header and encoding Shopify uses."""
        super().__init__("X-Shopify-Hmac-Sha256", encoding="base64")

    def sign(self, body: bytes, key: bytes, *, timestamp: int, msg_id: str) -> dict[str, str]:
        """Return the signature, id and ``X-Shopify-Triggered-At`` headers."""
        headers = super().sign(body, key, timestamp=timestamp, msg_id=msg_id)
        triggered = datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
        return {
            **headers,
            "X-Shopify-Event-Id": msg_id,
            "X-Shopify-Webhook-Id": msg_id,
            "X-Shopify-Triggered-At": triggered,
        }


_FIXED: tuple[type[Scheme], ...] = (StandardWebhooks, Svix, Stripe, GitHub, Shopify, Slack)

#: Every scheme name :func:`get_scheme` accepts.
SCHEME_NAMES: tuple[str, ...] = (*(cls.name for cls in _FIXED), Hmac.name)


def get_scheme(
    name: str,
    *,
    header: str | None = None,
    prefix: str = "",
    encoding: str = "hex",
    algorithm: str = "sha256",
) -> Scheme:
    """Return the scheme called ``name``.

    ``header``, ``prefix``, ``encoding`` and ``algorithm`` configure the generic ``hmac``
    scheme; the other schemes fix their own and ignore them.

    Raises:
        ValueError: for an unknown name, encoding or algorithm, or ``hmac`` without a header.
    """
    if name == Hmac.name:
        return Hmac(header or "", prefix=prefix, encoding=encoding, algorithm=algorithm)
    for cls in _FIXED:
        if cls.name == name:
            return cls()
    raise ValueError(f"unknown scheme {name!r}; expected one of {', '.join(SCHEME_NAMES)}")
