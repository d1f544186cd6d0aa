"""Webhook signature schemes: one small verifier and signer per provider family, behind
the one interface of :class:`~hookline.ingest.schemes.base.Scheme`, and a registry of
their configured names.

| module | schemes |
|---|---|
| :mod:`.standard` | standard-webhooks (``v1`` HMAC and ``v1a`` Ed25519), svix |
| :mod:`.timestamped` | stripe, calendly, mux, paddle, slack, zoom, twitch |
| :mod:`.body` | hmac (generic), github, shopify, intercom, bitbucket, typeform, |
| | woocommerce, linear |
| :mod:`.url` | twilio, square, hubspot |
| :mod:`.asymmetric` | sendgrid (ECDSA P-256), discord (Ed25519) |
| :mod:`.shared` | token (generic), gitlab, basic-auth, mailgun |
"""

from __future__ import annotations

from hookline.ingest.schemes.asymmetric import Discord, SendGrid
from hookline.ingest.schemes.base import Answer, Key, PrivateKey, PublicKey, Scheme, SigningKey
from hookline.ingest.schemes.body import (
    ALGORITHMS,
    ENCODINGS,
    Bitbucket,
    GitHub,
    Hmac,
    Intercom,
    Linear,
    Shopify,
    Typeform,
    WooCommerce,
)
from hookline.ingest.schemes.shared import BasicAuth, GitLab, Mailgun, Token
from hookline.ingest.schemes.standard import StandardWebhooks, Svix
from hookline.ingest.schemes.timestamped import Calendly, Mux, Paddle, Slack, Stripe, Twitch, Zoom
from hookline.ingest.schemes.url import HubSpot, Square, Twilio

#: Schemes configured by their name alone, by that name.
FIXED: dict[str, type[Scheme]] = {
    cls.name: cls
    for cls in (
        StandardWebhooks,
        Svix,
        Stripe,
        GitHub,
        Shopify,
        Slack,
        SendGrid,
        Discord,
        Twilio,
        Mailgun,
        Paddle,
        Zoom,
        Square,
        Intercom,
        Linear,
        Twitch,
        GitLab,
        Bitbucket,
        HubSpot,
        Typeform,
        WooCommerce,
        Calendly,
        Mux,
        BasicAuth,
    )
}
#: Every scheme name :func:`get_scheme` accepts; ``hmac`` and ``token`` take options.
SCHEME_NAMES: tuple[str, ...] = (*FIXED, Hmac.name, Token.name)


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
    scheme (``header`` and ``prefix`` the ``token`` scheme); the other schemes fix their
    own and ignore them.

    Raises:
        ValueError: for an unknown name, encoding or algorithm, or ``hmac`` or ``token``
            without a header.
    """
    if name == Hmac.name:
        return Hmac(header or "", prefix=prefix, encoding=encoding, algorithm=algorithm)
    if name == Token.name:
        return Token(header or "", prefix=prefix)
    cls = FIXED.get(name)
    if cls is None:
        raise ValueError(f"unknown scheme {name!r}; expected one of {', '.join(SCHEME_NAMES)}")
    return cls()


__all__ = [
    "ALGORITHMS",
    "ENCODINGS",
    "SCHEME_NAMES",
    "Answer",
    "Key",
    "PrivateKey",
    "PublicKey",
    "Scheme",
    "SigningKey",
    "get_scheme",
]
