"""HMAC schemes that sign the URL the provider posted to: Twilio, Square, HubSpot (v3).

Behind a proxy the URL hookline sees is not the one the provider signed, so a source of
these schemes names its ``public_url`` (the URL given to the provider, without a query
string); the receiver appends the query string of the request to it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from hookline.errors import TimestampError, VerificationError
from hookline.ingest.schemes.base import (
    HmacScheme,
    Key,
    Read,
    SigningKey,
    decode,
    encode,
    header,
    keyed,
    unix_millis,
)


def _url(url: str) -> bytes:
    """The URL as signed bytes, refusing an empty one (a source without ``public_url``)."""
    if not url:
        raise VerificationError("no public_url is configured to verify the signed URL against")
    return url.encode("utf-8", "surrogateescape")


def port_variants(url: str) -> tuple[str, ...]:
    """``url`` as given, and with its default port added or removed (as Twilio's SDK tries)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        other = parts._replace(netloc=host)
    else:
        default = 443 if parts.scheme == "https" else 80
        other = parts._replace(netloc=f"{parts.netloc}:{default}")
    variant = urlunsplit(other)
    return (url,) if variant == url else (url, variant)


class Twilio(HmacScheme):
    """Twilio: ``X-Twilio-Signature`` (HMAC-SHA1, base64) over the URL and sorted form
    parameters; a JSON body instead carries its SHA-256 as ``bodySHA256`` in the URL."""

    name = "twilio"
    header_prefixes = ("x-twilio-", "i-twilio-")
    default_id = (
        "header:i-twilio-idempotency-token",
        "body:MessageSid",
        "body:CallSid",
        "body:Sid",
    )
    default_type = (
        "body:EventType",
        "body:MessageStatus",
        "body:SmsStatus",
        "body:CallStatus",
    )
    signs_url = True
    label = "X-Twilio-Signature"
    algorithm = "sha1"
    signature_header = "X-Twilio-Signature"

    def query(self, body: bytes) -> str:
        """``bodySHA256=<hex>`` for a JSON body; a form body adds nothing."""
        if body.lstrip()[:1] in (b"{", b"["):
            return "bodySHA256=" + hashlib.sha256(body).hexdigest()
        return ""

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature and idempotency-token headers for ``body`` sent to ``url``."""
        signed = self._signed(body, url)
        digest = encode(self.digest(self.hmac_key(key), signed, b""), "base64")
        return {self.signature_header: digest, "I-Twilio-Idempotency-Token": msg_id}

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
        """Return the auth token's key that signed the request at ``url`` or its variant."""
        raw = decode(header(headers, self.signature_header), "base64")
        if raw is None:
            raise VerificationError(
                f"no well-formed signature in the {self.signature_header} header"
            )
        if not keys:
            raise VerificationError("no secret is configured to verify against")
        _url(url)
        signed = [self._signed(body, variant) for variant in port_variants(url)]
        for key in keys:
            if type(key) is bytes:
                for message in signed:
                    if hmac.compare_digest(self.digest(key, message, b""), raw):
                        return key
        raise VerificationError(f"no {self.label} signature matched")

    def _signed(self, body: bytes, url: str) -> bytes:
        """The bytes Twilio signs: the URL, then (for a form) each name and value, sorted."""
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        expected = query.get("bodySHA256")
        if expected is not None:
            actual = hashlib.sha256(body).hexdigest()
            if not hmac.compare_digest(actual.encode(), expected.encode("utf-8", "replace")):
                raise VerificationError("the body does not match the URL's bodySHA256")
            return _url(url)
        try:
            pairs = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)
            )
        except (UnicodeDecodeError, ValueError):
            raise VerificationError(
                "the body is neither a form nor covered by bodySHA256"
            ) from None
        values: dict[str, set[str]] = {}
        for name, value in pairs:
            values.setdefault(name, set()).add(value)
        signed = "".join(n + v for n in sorted(values) for v in sorted(values[n]))
        return _url(url) + signed.encode("utf-8")

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        raise NotImplementedError  # verify is overridden: Twilio's signed bytes need the body


class Square(HmacScheme):
    """Square: ``x-square-hmacsha256-signature`` (base64) over the notification URL + body."""

    name = "square"
    header_prefixes = ("x-square-", "square-")
    default_id = ("body:event_id",)
    signs_url = True
    label = "x-square-hmacsha256-signature"
    signature_header = "x-square-hmacsha256-signature"

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature header for ``body`` sent to ``url``."""
        digest = self.digest(self.hmac_key(key), _url(url), body)
        return {self.signature_header: encode(digest, "base64")}

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        raw = decode(header(headers, self.signature_header), "base64")
        return _url(url), [] if raw is None else [raw]


#: The escapes HubSpot decodes in the URI before signing it (its "Validating requests").
_HUBSPOT_DECODED = tuple(
    (f"%{ord(c):02X}", c) for c in (":", "/", "?", "@", "!", "$", "'", "(", ")", "*", ",", ";")
)


def hubspot_uri(url: str) -> str:
    """``url`` with the escapes HubSpot decodes before signing decoded (either case)."""
    for escape, char in _HUBSPOT_DECODED:
        url = url.replace(escape, char).replace(escape.lower(), char)
    return url


class HubSpot(HmacScheme):
    """HubSpot v3: ``X-HubSpot-Signature-v3`` (base64) over
    ``POST{uri}{body}{timestamp}``, the timestamp in milliseconds."""

    name = "hubspot"
    header_prefixes = ("x-hubspot-",)
    default_id = ("body:0.eventId",)
    default_type = ("body:0.subscriptionType",)
    uses_timestamp = True
    signs_url = True
    label = "v3"
    signature_header = "X-HubSpot-Signature-v3"
    timestamp_header: ClassVar[str] = "X-HubSpot-Request-Timestamp"

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the v3 signature and timestamp headers for ``body`` sent to ``url``."""
        millis = str(timestamp * 1000).encode()
        digest = self._mac(self.hmac_key(key), _url(hubspot_uri(url)), body, millis)
        return {
            self.signature_header: encode(digest, "base64"),
            self.timestamp_header: millis.decode(),
        }

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
        """Return the client secret's key that signed the request (the timestamp follows
        the body in the signed bytes)."""
        raw = decode(header(headers, self.signature_header), "base64")
        raw_ts = header(headers, self.timestamp_header, TimestampError)
        millis = unix_millis(raw_ts, tolerance=tolerance, now=now)
        if raw is None:
            raise VerificationError(
                f"no well-formed v3 signature in the {self.signature_header} header"
            )
        if not keys:
            raise VerificationError("no secret is configured to verify against")
        uri = _url(hubspot_uri(url))
        for key in keys:
            if type(key) is bytes and hmac.compare_digest(self._mac(key, uri, body, millis), raw):
                return key
        raise VerificationError("no v3 signature matched")

    def _mac(self, key: bytes, uri: bytes, body: bytes, millis: bytes) -> bytes:
        mac = keyed(key, self.algorithm).copy()
        mac.update(b"POST" + uri)
        mac.update(body)
        mac.update(millis)
        return mac.digest()

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        raise NotImplementedError  # verify is overridden: the timestamp follows the body
