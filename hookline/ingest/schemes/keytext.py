"""Public and private keys of the asymmetric schemes, read from text and written to it.

Everything cryptographic is ``cryptography``'s (OpenSSL): this module only decodes the
text forms providers print (base64 DER, hex, ``whpk_`` base64) and checks each key is of
the kind the scheme signs with, so a wrong paste fails at start-up, not on every request.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: Length of an Ed25519 key (public, or the private seed), in bytes.
ED25519_KEY_BYTES = 32


def b64(text: str, what: str) -> bytes:
    """Base64-decode ``text`` (padding optional), naming ``what`` when it is not base64.

    Raises:
        ValueError: without quoting the text, which may be a private key.
    """
    stripped = "".join(text.split())
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


def from_hex(text: str, what: str) -> bytes:
    """Hex-decode ``text``, naming ``what`` when it is not hex.

    Raises:
        ValueError: without quoting the text.
    """
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"{what} is not valid hex") from None


def ed25519_public(raw: bytes, what: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes.

    Raises:
        ValueError: for any other length.
    """
    if len(raw) != ED25519_KEY_BYTES:
        raise ValueError(f"{what} is {len(raw)} bytes; an Ed25519 key is {ED25519_KEY_BYTES}")
    return Ed25519PublicKey.from_public_bytes(raw)


def ed25519_private(raw: bytes, what: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from its 32-byte seed.

    Raises:
        ValueError: for any other length.
    """
    if len(raw) != ED25519_KEY_BYTES:
        raise ValueError(f"{what} is {len(raw)} bytes; an Ed25519 key is {ED25519_KEY_BYTES}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def ed25519_raw(key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """The raw 32-byte seed and public key of ``key``."""
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return seed, public


def p256_public(text: str, what: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from base64 SPKI DER (SendGrid's form) or a PEM block.

    Raises:
        ValueError: when the text is not such a key, or a key on another curve.
    """
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(b64(text, what))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        if "not valid base64" in str(exc):
            raise
        raise ValueError(f"{what} is not a DER or PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{what} is not an ECDSA P-256 public key")
    return key


def p256_private(text: str, what: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from base64 PKCS#8 DER (as ``hookline keygen`` prints it).

    Raises:
        ValueError: when the text is not such a key.
    """
    try:
        key = serialization.load_der_private_key(b64(text, what), password=None)
    except (ValueError, TypeError) as exc:
        if "not valid base64" in str(exc):
            raise
        raise ValueError(f"{what} is not a DER private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{what} is not an ECDSA P-256 private key")
    return key


def p256_texts(key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """``key`` as base64 PKCS#8 DER and its public key as base64 SPKI DER."""
    private = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(private).decode("ascii"), base64.b64encode(public).decode("ascii")
