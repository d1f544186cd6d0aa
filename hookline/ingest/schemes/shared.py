"""Schemes that authenticate without signing the body.

- ``token``: a shared token in a configured header (``X-Token: …``, ``Authorization:
  Bearer …``), for providers that sign nothing; ``gitlab`` is it with ``X-Gitlab-Token``.
- ``basic-auth``: HTTP Basic credentials in the URL the provider posts to (Postmark and
  others); each secret is ``user:password``.
- ``mailgun``: an HMAC over ``{timestamp}{token}`` carried in the body; the body itself is
  not signed, so each token is accepted once (the receiver remembers it in Redis).

Tokens are compared as SHA-256 digests, in constant time whatever their lengths.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import orjson

from hookline.errors import TimestampError, VerificationError
from hookline.ingest.schemes.base import (
    Key,
    Scheme,
    SigningKey,
    decode,
    header,
    keyed,
    unix_seconds,
    utf8_key,
    wire_bytes,
)

#: Longest Mailgun token accepted (they are 50 characters): it becomes part of a Redis key.
MAX_TOKEN_LENGTH = 256


def _same(presented: bytes, key: bytes) -> bool:
    """Constant-time equality that does not leak the length of ``key`` either."""
    return hmac.compare_digest(hashlib.sha256(presented).digest(), hashlib.sha256(key).digest())


class _SharedSecret(Scheme):
    """A secret the provider sends back as is; never kept with the event."""

    signs_body = False

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
        """Return the secret the request presents."""
        presented = self._presented(headers)
        if not keys:
            raise VerificationError("no secret is configured to verify against")
        for key in keys:
            if type(key) is bytes and _same(presented, key):
                return key
        raise VerificationError(f"the {self.label} matched no configured secret")

    def _presented(self, headers: Mapping[str, str]) -> bytes:
        raise NotImplementedError


class Token(_SharedSecret):
    """A shared token in a configured header, after an optional prefix (``Bearer ``)."""

    name = "token"
    header_prefixes: ClassVar[tuple[str, ...]] = ()
    default_id: ClassVar[tuple[str, ...]] = ("body:id",)
    label = "token"

    def __init__(self, header: str, *, prefix: str = "") -> None:
        """Configure the header and the prefix before the token.

        Raises:
            ValueError: if the header is empty.
        """
        if not header:
            raise ValueError(f"the {self.name} scheme needs a signature_header naming its header")
        self.signature_header = header
        self.prefix = prefix
        self.secret_headers = (header.lower(),)

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the header carrying the token."""
        if not isinstance(key, bytes):
            raise ValueError(f"the {self.name} scheme sends a secret, not a private key")
        return {self.signature_header: self.prefix + key.decode("utf-8")}

    def _presented(self, headers: Mapping[str, str]) -> bytes:
        value = header(headers, self.signature_header)
        if not value.startswith(self.prefix):
            raise VerificationError(
                f"the {self.signature_header} header lacks the {self.prefix!r} prefix"
            )
        return wire_bytes(value[len(self.prefix) :], self.signature_header)


class GitLab(Token):
    """GitLab: the secret token itself in ``X-Gitlab-Token``; nothing is signed."""

    name = "gitlab"
    header_prefixes = ("x-gitlab-", "idempotency-key")
    default_id = ("header:idempotency-key", "header:x-gitlab-event-uuid")
    default_type = ("header:x-gitlab-event", "body:object_kind")

    def __init__(self) -> None:
        """Fix GitLab's header."""
        super().__init__("X-Gitlab-Token")

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the token and the event UUID headers."""
        headers = super().sign(body, key, timestamp=timestamp, msg_id=msg_id)
        return {**headers, "X-Gitlab-Event-UUID": msg_id}


class BasicAuth(_SharedSecret):
    """HTTP Basic credentials (``https://user:password@host/hooks/NAME``)."""

    name = "basic-auth"
    header_prefixes: ClassVar[tuple[str, ...]] = ()
    default_id: ClassVar[tuple[str, ...]] = ("body:id",)
    label = "Basic credentials"
    signature_header = "Authorization"
    secret_headers = ("authorization",)

    def key(self, secret: str) -> bytes:
        """The ``user:password`` pair as bytes.

        Raises:
            ValueError: when the secret holds no ``:``.
        """
        if ":" not in secret:
            raise ValueError("expected user:password")
        return utf8_key(secret)

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the ``Authorization: Basic …`` header."""
        if not isinstance(key, bytes):
            raise ValueError("the basic-auth scheme sends credentials, not a private key")
        return {self.signature_header: "Basic " + base64.b64encode(key).decode("ascii")}

    def _presented(self, headers: Mapping[str, str]) -> bytes:
        kind, _, value = header(headers, self.signature_header).strip().partition(" ")
        raw = decode(value.strip(), "base64") if kind.lower() == "basic" else None
        if raw is None:
            raise VerificationError("the Authorization header holds no Basic credentials")
        return raw


class Mailgun(Scheme):
    """Mailgun: ``signature: {timestamp, token, signature}`` in the body, an HMAC-SHA256
    (hex) over ``{timestamp}{token}``; the body is not signed."""

    name = "mailgun"
    header_prefixes: ClassVar[tuple[str, ...]] = ()
    default_id = ("body:event-data.id",)
    default_type = ("body:event-data.event",)
    uses_timestamp = True
    single_use_tokens = True
    signs_body = False
    label = "signature"
    signature_header = ""

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
        """Return the signing key that signed the body's timestamp and token."""
        fields = _signature(body)
        stamp = unix_seconds(fields["timestamp"], tolerance=tolerance, now=now)
        raw = decode(fields["signature"], "hex")
        if raw is None:
            raise VerificationError("no well-formed signature in the body's signature object")
        if not keys:
            raise VerificationError("no secret is configured to verify against")
        token = fields["token"].encode("utf-8")
        for key in keys:
            if type(key) is bytes:
                mac = keyed(key, "sha256").copy()
                mac.update(stamp + token)
                if hmac.compare_digest(mac.digest(), raw):
                    return key
        raise VerificationError("no signature matched")

    def token(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The body's single-use ``token``.

        Raises:
            VerificationError: when it is longer than any Mailgun sends.
        """
        token = _signature(body)["token"]
        if len(token) > MAX_TOKEN_LENGTH:
            raise VerificationError(f"token longer than {MAX_TOKEN_LENGTH} characters")
        return token

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """No headers: the signature travels in the body (see :meth:`sign_body`)."""
        return {}

    def sign_body(self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str) -> bytes:
        """The JSON object ``body`` with a ``signature`` object for a fresh token."""
        if not isinstance(key, bytes):
            raise ValueError("the mailgun scheme signs with a secret, not a private key")
        payload = orjson.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("a Mailgun body is a JSON object")
        token = hashlib.sha256(f"{msg_id}{timestamp}".encode()).hexdigest()[:50]
        mac = hmac.new(key, f"{timestamp}{token}".encode(), "sha256").hexdigest()
        signature = {"timestamp": str(timestamp), "token": token, "signature": mac}
        return orjson.dumps({**payload, "signature": signature})


def _signature(body: bytes) -> dict[str, str]:
    """The timestamp, token and signature of a Mailgun body (JSON, or a legacy form).

    Raises:
        VerificationError: when one is missing or not text.
    """
    found: Any = None
    try:
        payload = orjson.loads(body)
        found = payload.get("signature") if isinstance(payload, dict) else None
    except orjson.JSONDecodeError:
        try:
            found = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            found = None
    if not isinstance(found, dict):
        raise VerificationError("no signature object in the body")
    fields = {}
    for name in ("timestamp", "token", "signature"):
        value = found.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and name == "timestamp":
            value = str(value)
        if not isinstance(value, str) or not value:
            error = TimestampError if name == "timestamp" else VerificationError
            raise error(f"missing {name} in the body's signature object")
        fields[name] = value
    return fields
