"""One test case per signature scheme: its keys, how a provider signs, what it requires.

Shared by the tests that every scheme must pass (tests/test_schemes_every.py) and by the
receiver's tests over every scheme (tests/test_providers_receiver.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

from hookline.ingest.schemes import SCHEME_NAMES, Key, Scheme, SigningKey, get_scheme

NOW = 1_700_000_000
TOLERANCE = 300.0
#: A JSON object body every scheme can carry (Linear and Mailgun add their fields to it).
BODY = b'{"id":"evt_test_webhook","object":"event","type":"ping"}'
#: The URL given to providers that sign it (Twilio, Square, HubSpot).
URL = "https://hooks.example.com/hooks/case"


def one_off(value: str) -> str:
    """Change one character in the middle of ``value``, staying within hex and base64."""
    i = len(value) // 2
    return value[:i] + ("b" if value[i] == "a" else "a") + value[i + 1 :]


@dataclass
class Case:
    """A scheme with two usable keys and what its requests must carry."""

    scheme: Scheme
    #: Secrets (symmetric schemes); two, for rotation and wrong-key tests.
    secrets: tuple[str, str] = ("case-secret-1", "case-secret-2")
    #: Headers whose absence must fail verification.
    required: tuple[str, ...] = ()
    #: Whether a change to the body must fail verification (false where it is unsigned).
    signs_body: bool = True
    #: Whether any bytes can be signed (false where the scheme needs JSON or a form).
    any_body: bool = True
    #: Where the timestamp is, for malformed-timestamp tests: a header, or None.
    timestamp_header: str | None = None
    #: Extra configuration (``hmac``, ``token``).
    options: dict[str, Any] = field(default_factory=dict)
    #: Asymmetric schemes: two generated ``(private, public)`` pairs, made on first use.
    _pairs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The scheme's configured name."""
        return self.scheme.name

    @property
    def asymmetric(self) -> bool:
        """Whether the scheme is keyed by public keys only."""
        return not self.scheme.takes_secrets

    def pairs(self) -> list[tuple[str, str]]:
        """Two test key pairs (asymmetric schemes)."""
        if not self._pairs:
            self._pairs.extend(self.scheme.generate() for _ in range(2))
        return self._pairs

    def signing_key(self, which: int = 0) -> SigningKey:
        """The key that signs like the provider: a secret's key or a private key."""
        if self.asymmetric:
            return self.scheme.signing_key(self.pairs()[which][0])
        return self.scheme.key(self.secrets[which])

    def key(self, which: int = 0) -> Key:
        """The key the receiver verifies with."""
        if self.asymmetric:
            return self.scheme.public_key(self.pairs()[which][1])
        return self.scheme.key(self.secrets[which])

    def url(self, body: bytes) -> str:
        """The URL the provider posts ``body`` to (with its query string), or ``""``."""
        if not self.scheme.signs_url:
            return ""
        query = self.scheme.query(body)
        return f"{URL}?{query}" if query else URL

    def signed(
        self, body: bytes = BODY, *, timestamp: int = NOW, which: int = 0
    ) -> tuple[bytes, CIMultiDict[str]]:
        """The body and headers the provider would send (the body may gain fields)."""
        key = self.signing_key(which)
        body = self.scheme.sign_body(body, key, timestamp=timestamp, msg_id="msg_1")
        headers = self.scheme.sign(
            body, key, timestamp=timestamp, msg_id="msg_1", url=self.url(body)
        )
        return body, CIMultiDict(headers)

    def verify(
        self,
        body: bytes,
        headers: CIMultiDict[str],
        *keys: Key,
        now: float = NOW,
        url: str | None = None,
    ) -> Key:
        """Verify with ``keys`` (default: the first key) at ``now``."""
        return self.scheme.verify(
            body,
            headers,
            list(keys) if keys else [self.key()],
            tolerance=TOLERANCE,
            now=now,
            url=self.url(body) if url is None else url,
        )


def _case(name: str, **kw: Any) -> Case:
    options = kw.pop("options", {})
    return Case(get_scheme(name, **options), options=options, **kw)


CASES: list[Case] = [
    _case(
        "standard-webhooks",
        secrets=("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kIHNlY3JldA=="),
        required=("webhook-id", "webhook-timestamp", "webhook-signature"),
        timestamp_header="webhook-timestamp",
    ),
    _case(
        "svix",
        secrets=("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kIHNlY3JldA=="),
        required=("svix-id", "svix-timestamp", "svix-signature"),
        timestamp_header="svix-timestamp",
    ),
    _case("stripe", required=("Stripe-Signature",)),
    _case("github", required=("X-Hub-Signature-256",)),
    _case("shopify", required=("X-Shopify-Hmac-Sha256",)),
    _case(
        "slack",
        required=("X-Slack-Signature", "X-Slack-Request-Timestamp"),
        timestamp_header="X-Slack-Request-Timestamp",
    ),
    _case(
        "hmac",
        options={"header": "X-Signature", "prefix": "sha512=", "encoding": "base64"},
        required=("X-Signature",),
    ),
    _case(
        "sendgrid",
        required=(
            "X-Twilio-Email-Event-Webhook-Signature",
            "X-Twilio-Email-Event-Webhook-Timestamp",
        ),
    ),
    _case("discord", required=("X-Signature-Ed25519", "X-Signature-Timestamp")),
    _case("twilio", required=("X-Twilio-Signature",), any_body=False),
    _case("mailgun", signs_body=False, any_body=False),
    _case("paddle", required=("Paddle-Signature",)),
    _case(
        "zoom",
        required=("x-zm-signature", "x-zm-request-timestamp"),
    ),
    _case("square", required=("x-square-hmacsha256-signature",)),
    _case("intercom", required=("X-Hub-Signature",)),
    _case("linear", required=("Linear-Signature",), any_body=False),
    _case(
        "twitch",
        required=(
            "Twitch-Eventsub-Message-Id",
            "Twitch-Eventsub-Message-Timestamp",
            "Twitch-Eventsub-Message-Signature",
        ),
    ),
    _case("gitlab", required=("X-Gitlab-Token",), signs_body=False),
    _case("bitbucket", required=("X-Hub-Signature",)),
    _case(
        "hubspot",
        required=("X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"),
        timestamp_header="X-HubSpot-Request-Timestamp",
    ),
    _case("typeform", required=("Typeform-Signature",)),
    _case("woocommerce", required=("X-WC-Webhook-Signature",)),
    _case("calendly", required=("Calendly-Webhook-Signature",)),
    _case("mux", required=("Mux-Signature",)),
    _case(
        "basic-auth",
        secrets=("postmark:s3cret", "postmark:rotated"),
        required=("Authorization",),
        signs_body=False,
    ),
    _case(
        "token",
        options={"header": "Authorization", "prefix": "Bearer "},
        required=("Authorization",),
        signs_body=False,
    ),
]
IDS = [case.name for case in CASES]
TIMESTAMPED = [case for case in CASES if case.scheme.uses_timestamp]
assert sorted(IDS) == sorted(SCHEME_NAMES), "every scheme needs a case"


def verify_vector(
    name: str,
    body: bytes,
    headers: dict[str, str],
    key: Key,
    *,
    now: float = NOW,
    url: str = "",
    tolerance: float = 10**12,
) -> Key:
    """Verify a published or computed vector with its key, at its own time (by default
    with a tolerance wide enough for old vectors to verify on their signature alone)."""
    return get_scheme(name).verify(
        body, CIMultiDict(headers), [key], tolerance=tolerance, now=now, url=url
    )
