"""HMAC schemes over the raw body alone, with the signature in one header.

The generic ``hmac`` scheme is configured (header, prefix, encoding, hash); each preset
fixes them for one provider: GitHub, Shopify, Intercom, Bitbucket, Typeform, WooCommerce
and Linear (which also checks the signed ``webhookTimestamp`` in the body).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar

import orjson

from hookline.errors import TimestampError, VerificationError
from hookline.ingest.schemes.base import (
    Answer,
    HmacScheme,
    Key,
    Read,
    SigningKey,
    check_age,
    decode,
    encode,
    header,
)

#: Hash algorithms the generic ``hmac`` scheme accepts.
ALGORITHMS = ("sha1", "sha256", "sha512")
#: Signature encodings the generic ``hmac`` scheme accepts.
ENCODINGS = ("hex", "base64")


class Hmac(HmacScheme):
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
            raise ValueError(f"the {self.name} scheme needs a signature header name")
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

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature header; ``timestamp`` and ``msg_id`` are not sent."""
        digest = encode(self.digest(self.hmac_key(key), b"", body), self.encoding)
        return {self.signature_header: self.prefix + digest}

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        value = header(headers, self.signature_header)
        if not value.startswith(self.prefix):
            raise VerificationError(
                f"the {self.signature_header} header lacks the {self.prefix!r} prefix"
            )
        raw = decode(value[len(self.prefix) :], self.encoding)
        return b"", [] if raw is None else [raw]


class _Preset(Hmac):
    """A provider's fixed header, prefix, encoding and hash; ids sent in a header."""

    header_name: ClassVar[str]
    value_prefix: ClassVar[str] = ""
    value_encoding: ClassVar[str] = "hex"
    hash_name: ClassVar[str] = "sha256"
    #: Headers ``sign`` sets to the event id, as the provider sends it.
    id_headers: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        """Fix the header, prefix, encoding and hash the provider uses."""
        super().__init__(
            self.header_name,
            prefix=self.value_prefix,
            encoding=self.value_encoding,
            algorithm=self.hash_name,
        )

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature header and the headers that carry the id."""
        headers = super().sign(body, key, timestamp=timestamp, msg_id=msg_id)
        return {**headers, **dict.fromkeys(self.id_headers, msg_id)}


class GitHub(_Preset):
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body."""

    name = "github"
    header_prefixes = ("x-github-", "x-hub-")
    default_id = ("header:x-github-delivery",)
    default_type = ("header:x-github-event",)
    header_name = "X-Hub-Signature-256"
    value_prefix = "sha256="
    id_headers = ("X-GitHub-Delivery",)


class Shopify(_Preset):
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64>`` over the raw body."""

    name = "shopify"
    header_prefixes = ("x-shopify-",)
    default_id = ("header:x-shopify-event-id", "header:x-shopify-webhook-id")
    default_type = ("header:x-shopify-topic",)
    header_name = "X-Shopify-Hmac-Sha256"
    value_encoding = "base64"
    id_headers = ("X-Shopify-Event-Id", "X-Shopify-Webhook-Id")

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature, id and ``X-Shopify-Triggered-At`` headers."""
        headers = super().sign(body, key, timestamp=timestamp, msg_id=msg_id)
        triggered = datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
        return {**headers, "X-Shopify-Triggered-At": triggered}


class Intercom(_Preset):
    """Intercom: ``X-Hub-Signature: sha1=<hex>`` (HMAC-SHA1) over the raw body."""

    name = "intercom"
    header_prefixes = ("x-hub-",)
    default_id = ("body:id",)
    default_type = ("body:topic",)
    header_name = "X-Hub-Signature"
    value_prefix = "sha1="
    hash_name = "sha1"


class Bitbucket(_Preset):
    """Bitbucket Cloud: ``X-Hub-Signature: sha256=<hex>`` over the raw body."""

    name = "bitbucket"
    header_prefixes = ("x-hub-", "x-event-", "x-hook-", "x-request-", "x-attempt-")
    default_id = ("header:x-request-uuid",)
    default_type = ("header:x-event-key",)
    header_name = "X-Hub-Signature"
    value_prefix = "sha256="
    id_headers = ("X-Request-UUID",)


class Typeform(_Preset):
    """Typeform: ``Typeform-Signature: sha256=<base64>`` over the raw body."""

    name = "typeform"
    header_prefixes = ("typeform-",)
    default_id = ("body:event_id",)
    default_type = ("body:event_type",)
    header_name = "Typeform-Signature"
    value_prefix = "sha256="
    value_encoding = "base64"


#: WooCommerce's unsigned ping when a webhook is created: a form holding only its id.
_WOO_PING = re.compile(rb"webhook_id=[0-9]{1,20}")
#: The entities WordPress's ``wp_specialchars_decode`` undoes in the secret before signing.
_WP_ENTITIES = (
    ("&lt;", "<"),
    ("&gt;", ">"),
    ("&quot;", '"'),
    ("&#039;", "'"),
    ("&amp;", "&"),
)


class WooCommerce(_Preset):
    """WooCommerce: ``X-WC-Webhook-Signature: <base64>`` over the raw body.

    The ping WooCommerce sends when a webhook is created is unsigned (a form
    ``webhook_id=<n>``): it is answered 200 and never enqueued.
    """

    name = "woocommerce"
    header_prefixes = ("x-wc-webhook-",)
    default_id = ("header:x-wc-webhook-delivery-id",)
    default_type = ("header:x-wc-webhook-topic",)
    answers_handshakes = True
    header_name = "X-WC-Webhook-Signature"
    value_encoding = "base64"
    id_headers = ("X-WC-Webhook-Delivery-ID",)

    def key(self, secret: str) -> bytes:
        """The secret with the HTML entities WordPress decodes before signing decoded."""
        for entity, char in _WP_ENTITIES:
            secret = secret.replace(entity, char)
        return super().key(secret)

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
        """Verify, letting through only the unsigned creation ping (see the class)."""
        if _WOO_PING.fullmatch(body) and self.signature_header not in headers:
            return b""
        return super().verify(body, headers, keys, tolerance=tolerance, now=now, url=url)

    def handshake(self, body: bytes, headers: Mapping[str, str], key: Key) -> Answer | None:
        """Answer the creation ping 200, as WooCommerce requires, without enqueueing it."""
        if _WOO_PING.fullmatch(body):
            return Answer(200, b'{"ping":"ok"}', "application/json")
        return None


class Linear(_Preset):
    """Linear: ``Linear-Signature: <hex>`` over the raw body, whose signed
    ``webhookTimestamp`` (milliseconds) must be within the tolerance."""

    name = "linear"
    header_prefixes = ("linear-",)
    default_id = ("header:linear-delivery",)
    default_type = ("body:type",)
    uses_timestamp = True
    tolerance = 60.0  # Linear's SDK refuses a webhookTimestamp more than a minute off
    header_name = "Linear-Signature"
    id_headers = ("Linear-Delivery",)

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
        """Verify the signature, then the age of the body's ``webhookTimestamp``."""
        key = super().verify(body, headers, keys, tolerance=tolerance, now=now, url=url)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        stamp = payload.get("webhookTimestamp") if isinstance(payload, dict) else None
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise TimestampError("no webhookTimestamp (milliseconds) in the body")
        check_age(stamp / 1000, tolerance=tolerance, now=now)
        return key

    def sign_body(self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str) -> bytes:
        """Add ``webhookTimestamp`` (milliseconds) to a JSON object body that lacks it."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(payload, dict) or "webhookTimestamp" in payload:
            return body
        return orjson.dumps({**payload, "webhookTimestamp": timestamp * 1000})
