"""The interface every signature scheme implements, and the helpers they share.

A scheme turns configured secrets and public keys into keys once, at start-up, then
verifies requests against them; every scheme can also *sign*, so the tests and
``hookline send`` exercise the very code the receiver verifies with. Verification always
works on the raw request bytes. Most schemes are an HMAC over some bytes the provider puts
ahead of the raw body (an id, a timestamp, a URL, or nothing): :class:`HmacScheme` serves
them with one digest method shared by ``verify`` and ``sign``.
"""

from __future__ import annotations

import abc
import base64
import functools
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from cryptography.hazmat.primitives.asymmetric.ec import (
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hookline.errors import TimestampError, VerificationError

#: A public key a provider signs for (asymmetric schemes).
PublicKey: TypeAlias = Ed25519PublicKey | EllipticCurvePublicKey
#: A private key that signs like the provider (tests, ``hookline send``).
PrivateKey: TypeAlias = Ed25519PrivateKey | EllipticCurvePrivateKey
#: What a request is verified against: an HMAC key (bytes) or a public key.
Key: TypeAlias = bytes | PublicKey
#: What signs a request: an HMAC key (bytes) or a private key.
SigningKey: TypeAlias = bytes | PrivateKey

#: What an HMAC scheme reads from headers: the bytes signed ahead of the body, candidates.
Read: TypeAlias = tuple[bytes, list[bytes]]


@dataclass(frozen=True, slots=True)
class Answer:
    """A handshake's answer: sent instead of enqueueing, after the request verified."""

    status: int
    body: bytes = b""
    content_type: str | None = None


@functools.lru_cache(maxsize=64)
def keyed(key: bytes, algorithm: str) -> hmac.HMAC:
    """An HMAC that has taken ``key`` and nothing else: a copy of it starts each digest.

    Keying hashes two padded blocks; copying a keyed state skips that on every request.
    The few configured secrets stay cached; ``maxsize`` bounds keys seen only in signing.
    """
    return hmac.new(key, digestmod=algorithm)


def encode(digest: bytes, encoding: str) -> str:
    """Render a raw digest as the provider sends it: ``hex`` or ``base64``."""
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode("ascii")


def decode(value: str, encoding: str) -> bytes | None:
    """Decode one candidate signature to raw bytes, or ``None`` if it is malformed."""
    try:
        return bytes.fromhex(value) if encoding == "hex" else base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error is one; so is any non-ASCII input
        return None


def header(
    headers: Mapping[str, str], name: str, error: type[VerificationError] = VerificationError
) -> str:
    """Return a required header's value, raising ``error`` when it is absent."""
    value = headers.get(name)
    if value is None:
        raise error(f"missing {name} header")
    return value


def wire_bytes(value: str, name: str) -> bytes:
    """Return the bytes a provider sent (and signed) for a header value.

    aiohttp decodes header bytes as UTF-8 with ``surrogateescape``; undoing that recovers
    the exact bytes on the wire.
    """
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise VerificationError(f"malformed {name} header") from None


def check_age(seconds: float, *, tolerance: float, now: float) -> None:
    """Refuse a time more than ``tolerance`` seconds from ``now``, past or future."""
    age = now - seconds
    if age > tolerance:
        raise TimestampError(f"timestamp is {age:.0f} s old, beyond the {tolerance:g} s tolerance")
    if -age > tolerance:
        raise TimestampError(
            f"timestamp is {-age:.0f} s in the future, beyond the {tolerance:g} s tolerance"
        )


def unix_seconds(raw: str, *, tolerance: float, now: float, digits: int = 15) -> bytes:
    """Check unix seconds against ``now`` ± ``tolerance`` and return them as signed bytes."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= digits):
        raise TimestampError("malformed timestamp: expected unix seconds")
    check_age(int(raw), tolerance=tolerance, now=now)
    return raw.encode("ascii")


def unix_millis(raw: str, *, tolerance: float, now: float) -> bytes:
    """Check unix milliseconds against ``now`` ± ``tolerance`` (seconds); return the bytes."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise TimestampError("malformed timestamp: expected unix milliseconds")
    check_age(int(raw) / 1000, tolerance=tolerance, now=now)
    return raw.encode("ascii")


def utf8_key(secret: str) -> bytes:
    """The UTF-8 bytes of a configured secret.

    Raises:
        ValueError: if the secret is empty or not encodable.
    """
    if not secret:
        raise ValueError("secret is empty")
    try:
        return secret.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("secret is not valid UTF-8 text") from None


class Scheme(abc.ABC):
    """A provider's signature scheme: turns keys into key objects, verifies and signs."""

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
    #: The provider's documented replay window, seconds, where it differs from the
    #: default (a source's own ``tolerance`` wins).
    tolerance: ClassVar[float | None] = None
    #: The header carrying the signature(s) (kept with the event).
    signature_header: str
    #: What a signature is called in error messages ("v1", "v0", ...).
    label: ClassVar[str] = "HMAC"
    #: Whether the scheme is keyed by ``secrets`` (shared with the provider).
    takes_secrets: ClassVar[bool] = True
    #: Whether the scheme is keyed by ``public_keys`` (the provider holds the private key).
    takes_public_keys: ClassVar[bool] = False
    #: Whether the provider signs the URL it posts to (a source then needs ``public_url``).
    signs_url: ClassVar[bool] = False
    #: Whether some verified requests are handshakes answered by :meth:`handshake`.
    answers_handshakes: ClassVar[bool] = False
    #: Whether each request carries a token that must be accepted once only (:meth:`token`).
    single_use_tokens: ClassVar[bool] = False
    #: Whether the signature covers the body (not so where a token or password is sent
    #: as is, or where only a timestamp and token are signed): without that, a guard on
    #: the body against replays proves nothing.
    signs_body: ClassVar[bool] = True
    #: Lower-case names of the headers the signature covers besides the body (an id, a
    #: timestamp): an event id read from one of them cannot be changed by a replayer.
    signed_headers: ClassVar[tuple[str, ...]] = ()
    #: Lower-case names of headers that carry a secret itself: never stored with the event.
    secret_headers: tuple[str, ...] = ()

    def key(self, secret: str) -> bytes:
        """Return the HMAC key for a configured secret: its UTF-8 bytes unless overridden.

        Raises:
            ValueError: if the secret is empty or not usable by this scheme.
        """
        return utf8_key(secret)

    def public_key(self, text: str) -> PublicKey:
        """Return the public key a configured ``public_keys`` entry holds.

        Raises:
            ValueError: if the text is not such a key, or the scheme takes none.
        """
        raise ValueError(f"the {self.name} scheme takes no public keys; list secrets")

    def signing_key(self, text: str) -> PrivateKey:
        """Return the private key in ``text`` (as :meth:`generate` prints it), for signing.

        Raises:
            ValueError: if the text is not such a key, or the scheme takes none.
        """
        raise ValueError(f"the {self.name} scheme signs with a shared secret, not a private key")

    def generate(self) -> tuple[str, str]:
        """A new test key pair, as text: ``(private key, public key)``.

        Raises:
            ValueError: for a scheme keyed by shared secrets.
        """
        raise ValueError(f"the {self.name} scheme signs with a shared secret, not a key pair")

    @abc.abstractmethod
    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        keys: Sequence[Key],
        *,
        tolerance: float,
        now: float,
        url: str = "",
    ) -> Key:
        """Return the key among ``keys`` that signed ``body`` as ``headers`` claim.

        Accepting any key against any signature is what lets keys rotate; every
        comparison is constant-time. ``url`` is the URL the provider posted to (with its
        query string), for schemes that sign it.

        Raises:
            VerificationError: if a header is missing or malformed or no signature matches.
            TimestampError: if the timestamp is missing, malformed or off by more than
                ``tolerance`` seconds from ``now``, past or future.
        """

    @abc.abstractmethod
    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the headers the provider would send with ``body`` to ``url``."""

    def sign_body(self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str) -> bytes:
        """The body as the provider would send it, for schemes that sign inside it
        (Mailgun's ``signature`` object, Linear's ``webhookTimestamp``); else ``body``."""
        return body

    def query(self, body: bytes) -> str:
        """The query string the provider adds to the URL it posts ``body`` to (usually none)."""
        return ""

    def handshake(self, body: bytes, headers: Mapping[str, str], key: Key) -> Answer | None:
        """The answer to a verified handshake request, or ``None`` for an event.

        ``key`` is the key that verified the request.
        """
        return None

    def token(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The single-use token of a verified request (schemes with ``single_use_tokens``).

        Raises:
            VerificationError: when the request carries none.
        """
        raise VerificationError(f"the {self.name} scheme has no single-use tokens")


class HmacScheme(Scheme):
    """A scheme whose signature is an HMAC over bytes read from headers, then the body."""

    #: Hash algorithm of the HMAC.
    algorithm: str = "sha256"

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        keys: Sequence[Key],
        *,
        tolerance: float,
        now: float,
        url: str = "",
    ) -> Key:
        """Return the secret's key that signed ``body`` (see :meth:`Scheme.verify`)."""
        signed, candidates = self._read(headers, tolerance=tolerance, now=now, url=url)
        if not candidates:
            raise VerificationError(
                f"no well-formed {self.label} signature in the {self.signature_header} header"
            )
        if not keys:
            raise VerificationError("no secret is configured to verify against")
        for key in keys:
            if type(key) is bytes:
                digest = self.digest(key, signed, body)
                for candidate in candidates:
                    if hmac.compare_digest(digest, candidate):
                        return key
        raise VerificationError(f"no {self.label} signature matched")

    def digest(self, key: bytes, signed: bytes, body: bytes) -> bytes:
        """The one digest sign and verify share: HMAC over ``signed`` then the raw body."""
        mac = keyed(key, self.algorithm).copy()
        mac.update(signed)
        mac.update(body)  # not concatenated: bodies can be large
        return mac.digest()

    def hmac_key(self, key: SigningKey) -> bytes:
        """``key`` as an HMAC key, or a ValueError for a private key."""
        if not isinstance(key, bytes):
            raise ValueError(f"the {self.name} scheme signs with a secret, not a private key")
        return key

    @abc.abstractmethod
    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        """Return the bytes signed ahead of the body and the decoded candidate signatures."""
