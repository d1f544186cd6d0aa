"""Schemes where the provider signs with a private key: SendGrid (ECDSA P-256), Discord
(Ed25519). A source lists the provider's ``public_keys``; ``hookline keygen`` makes a test
pair whose private key ``hookline send`` signs with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hookline.errors import VerificationError
from hookline.ingest.schemes import keytext
from hookline.ingest.schemes.base import (
    Answer,
    Key,
    PrivateKey,
    PublicKey,
    Scheme,
    SigningKey,
    decode,
    encode,
    header,
    wire_bytes,
)

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class _Asymmetric(Scheme):
    """Signed ``{timestamp}{body}``, signature in one header, timestamp in another."""

    takes_secrets = False
    takes_public_keys = True
    timestamp_header: str
    #: How the signature is encoded in its header.
    encoding: str

    def key(self, secret: str) -> bytes:
        """Refuse a shared secret: this scheme is keyed by the provider's public key.

        Raises:
            ValueError: always.
        """
        raise ValueError(f"the {self.name} scheme takes no secrets; list public_keys")

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
        """Return the public key that signed ``{timestamp}{body}``."""
        signature = decode(header(headers, self.signature_header).strip(), self.encoding)
        timestamp = wire_bytes(header(headers, self.timestamp_header), self.timestamp_header)
        if not signature:
            raise VerificationError(
                f"no well-formed signature in the {self.signature_header} header"
            )
        if not keys:
            raise VerificationError("no public key is configured to verify against")
        message = timestamp + body
        for key in keys:
            if self._valid(key, signature, message):
                return key
        raise VerificationError("no signature matched")

    def _valid(self, key: Key, signature: bytes, message: bytes) -> bool:
        raise NotImplementedError


class SendGrid(_Asymmetric):
    """SendGrid Event Webhook: ECDSA P-256/SHA-256, base64 DER signature over
    ``{timestamp}{body}``; the verification key is base64 SPKI DER."""

    name = "sendgrid"
    header_prefixes = ("x-twilio-email-event-webhook-",)
    default_id = ("body:0.sg_event_id",)
    default_type = ("body:0.event",)
    label = "ECDSA"
    signature_header = "X-Twilio-Email-Event-Webhook-Signature"
    timestamp_header = "X-Twilio-Email-Event-Webhook-Timestamp"
    encoding = "base64"

    def public_key(self, text: str) -> PublicKey:
        """The Mail Settings verification key: base64 SPKI DER (or PEM) on P-256."""
        return keytext.p256_public(text, "public key")

    def signing_key(self, text: str) -> PrivateKey:
        """A P-256 private key as base64 PKCS#8 DER."""
        return keytext.p256_private(text, "private key")

    def generate(self) -> tuple[str, str]:
        """A new P-256 pair: base64 PKCS#8 DER, base64 SPKI DER."""
        return keytext.p256_texts(ec.generate_private_key(ec.SECP256R1()))

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature and timestamp headers (a DER signature, base64)."""
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the sendgrid scheme signs with a P-256 private key")
        signature = key.sign(str(timestamp).encode() + body, _ECDSA_SHA256)
        return {
            self.signature_header: encode(signature, "base64"),
            self.timestamp_header: str(timestamp),
        }

    def _valid(self, key: Key, signature: bytes, message: bytes) -> bool:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        try:
            key.verify(signature, message, _ECDSA_SHA256)
        except InvalidSignature:  # also what a signature that is not DER raises
            return False
        return True


class Discord(_Asymmetric):
    """Discord: Ed25519 over ``{timestamp}{body}``, hex signature and hex public key;
    PING answered (``{"type": 1}`` for interactions, ``204`` for webhook events)."""

    name = "discord"
    header_prefixes = ("x-signature-",)
    default_id = ("body:id", "body:event.timestamp")
    default_type = ("body:event.type", "body:type")
    answers_handshakes = True
    label = "Ed25519"
    signature_header = "X-Signature-Ed25519"
    timestamp_header = "X-Signature-Timestamp"
    encoding = "hex"

    def public_key(self, text: str) -> PublicKey:
        """The application's public key: 64 hex digits."""
        return keytext.ed25519_public(keytext.from_hex(text, "public key"), "public key")

    def signing_key(self, text: str) -> PrivateKey:
        """An Ed25519 private key: its 32-byte seed in hex."""
        return keytext.ed25519_private(keytext.from_hex(text, "private key"), "private key")

    def generate(self) -> tuple[str, str]:
        """A new Ed25519 pair, both in hex."""
        seed, public = keytext.ed25519_raw(Ed25519PrivateKey.generate())
        return seed.hex(), public.hex()

    def sign(
        self, body: bytes, key: SigningKey, *, timestamp: int, msg_id: str, url: str = ""
    ) -> dict[str, str]:
        """Return the signature and timestamp headers (hex)."""
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the discord scheme signs with an Ed25519 private key")
        signature = key.sign(str(timestamp).encode() + body)
        return {self.signature_header: signature.hex(), self.timestamp_header: str(timestamp)}

    def handshake(self, body: bytes, headers: Mapping[str, str], key: Key) -> Answer | None:
        """PONG an interactions PING (``type`` 1); ``204`` a webhook-events PING (``type`` 0)."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict) or "event" in payload:
            return None  # a webhook event (type 1 there is an event, not a PING)
        kind = payload.get("type")
        if kind == 1 and type(kind) is int:
            return Answer(200, b'{"type":1}', "application/json")
        if kind == 0 and type(kind) is int:
            return Answer(204)
        return None

    def _valid(self, key: Key, signature: bytes, message: bytes) -> bool:
        if not isinstance(key, Ed25519PublicKey):
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:  # also a signature of the wrong length
            return False
        return True
