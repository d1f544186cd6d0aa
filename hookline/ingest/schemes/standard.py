"""Standard Webhooks (and Svix, the same under ``svix-`` headers): ``v1`` HMAC, ``v1a`` Ed25519.

Both versions sign ``{id}.{timestamp}.{body}``; the signature header lists space-separated
``version,<base64>`` entries, and a request verifies if any ``v1`` entry matches one of
the source's ``whsec_`` secrets or any ``v1a`` entry one of its ``whpk_`` public keys.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hookline.errors import TimestampError, VerificationError
from hookline.ingest.schemes import keytext
from hookline.ingest.schemes.base import (
    HmacScheme,
    Key,
    PrivateKey,
    PublicKey,
    Read,
    SigningKey,
    decode,
    encode,
    header,
    unix_seconds,
    wire_bytes,
)


class StandardWebhooks(HmacScheme):
    """Standard Webhooks: ``v1,<base64>`` (HMAC-SHA256) and ``v1a,<base64>`` (Ed25519)."""

    name = "standard-webhooks"
    header_prefixes = ("webhook-",)
    default_id = ("header:webhook-id",)
    uses_timestamp = True
    takes_public_keys = True
    label = "v1 or v1a"
    id_header: ClassVar[str] = "webhook-id"
    timestamp_header: ClassVar[str] = "webhook-timestamp"
    signature_header = "webhook-signature"
    signed_headers = ("webhook-id", "webhook-timestamp")

    def key(self, secret: str) -> bytes:
        """Base64-decode the secret after its ``whsec_`` prefix, tolerating missing padding.

        Raises:
            ValueError: if the secret is empty or not base64, or is a ``whpk_`` public key.
        """
        if secret.startswith(("whpk_", "whsk_")):
            raise ValueError("is a v1a key: list whpk_ public keys under public_keys")
        key = keytext.b64(secret.removeprefix("whsec_"), "secret")
        if not key:
            raise ValueError("secret is empty")
        return key

    def public_key(self, text: str) -> PublicKey:
        """The Ed25519 public key of a ``whpk_<base64>`` entry (the prefix is optional).

        Raises:
            ValueError: for a ``whsec_`` secret, bad base64 or a key not 32 bytes long.
        """
        if text.startswith(("whsec_", "whsk_")):
            raise ValueError("is not a public key: expected whpk_ followed by base64")
        raw = keytext.b64(text.removeprefix("whpk_"), "public key (after any whpk_ prefix)")
        return keytext.ed25519_public(raw, "public key")

    def signing_key(self, text: str) -> PrivateKey:
        """The Ed25519 private key of a ``whsk_<base64>`` seed.

        Raises:
            ValueError: for anything else.
        """
        raw = keytext.b64(text.removeprefix("whsk_"), "private key (after any whsk_ prefix)")
        return keytext.ed25519_private(raw, "private key")

    def generate(self) -> tuple[str, str]:
        """A new Ed25519 pair as ``whsk_`` and ``whpk_`` texts."""
        seed, public = keytext.ed25519_raw(Ed25519PrivateKey.generate())
        return (
            "whsk_" + base64.b64encode(seed).decode("ascii"),
            "whpk_" + base64.b64encode(public).decode("ascii"),
        )

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the id, timestamp and signature headers: ``v1`` for a secret's key,
        ``v1a`` for an Ed25519 private key."""
        signed = f"{msg_id}.{timestamp}.".encode()
        if isinstance(key, Ed25519PrivateKey):
            entry = "v1a," + encode(key.sign(signed + body), "base64")
        else:
            entry = "v1," + encode(self.digest(self.hmac_key(key), signed, body), "base64")
        return {
            self.id_header: msg_id,
            self.timestamp_header: str(timestamp),
            self.signature_header: entry,
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
        """Return the secret or public key that signed the request (see ``Scheme.verify``)."""
        signed, macs, signatures = self._entries(headers, tolerance=tolerance, now=now)
        if not macs and not signatures:
            raise VerificationError(
                f"no well-formed v1 or v1a signature in the {self.signature_header} header"
            )
        if not keys:
            raise VerificationError("no secret is configured to verify against")
        message = b""
        for key in keys:
            if type(key) is bytes:
                if macs:
                    digest = self.digest(key, signed, body)
                    for candidate in macs:
                        if hmac.compare_digest(digest, candidate):
                            return key
            elif signatures and isinstance(key, Ed25519PublicKey):
                message = message or signed + body
                for signature in signatures:
                    try:
                        key.verify(signature, message)
                    except InvalidSignature:
                        continue
                    return key
        raise VerificationError("no v1 or v1a signature matched")

    def _entries(
        self, headers: Mapping[str, str], *, tolerance: float, now: float
    ) -> tuple[bytes, list[bytes], list[bytes]]:
        """The signed prefix, the ``v1`` digests and the ``v1a`` signatures of a request."""
        msg_id = wire_bytes(header(headers, self.id_header), self.id_header)
        entries = header(headers, self.signature_header).split()
        raw_ts = header(headers, self.timestamp_header, TimestampError)
        timestamp = unix_seconds(raw_ts, tolerance=tolerance, now=now)
        macs, signatures = [], []
        for entry in entries:  # other versions and malformed entries are skipped
            version, _, value = entry.partition(",")
            if version == "v1":
                if (raw := decode(value, "base64")) is not None:
                    macs.append(raw)
            elif version == "v1a" and (raw := decode(value, "base64")) is not None:
                signatures.append(raw)  # a length other than 64 fails as a bad signature
        return msg_id + b"." + timestamp + b".", macs, signatures

    def _read(self, headers: Mapping[str, str], *, tolerance: float, now: float, url: str) -> Read:
        signed, macs, _ = self._entries(headers, tolerance=tolerance, now=now)
        return signed, macs


class Svix(StandardWebhooks):
    """Svix (also Resend, Clerk and others built on it): Standard Webhooks under ``svix-``."""

    name = "svix"
    header_prefixes = ("svix-",)
    default_id = ("header:svix-id",)
    id_header = "svix-id"
    signed_headers = ("svix-id", "svix-timestamp")
    timestamp_header = "svix-timestamp"
    signature_header = "svix-signature"
