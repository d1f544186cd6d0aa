"""The HMAC and shared-secret presets against their providers' test vectors.

"official": published by the provider and reproduced; "computed": no vector is published,
so it was computed from the documented algorithm and is pinned here (see
../shared/PROVIDERS.md for the sources).
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
import pytest
from multidict import CIMultiDict

from hookline.errors import TimestampError, VerificationError
from hookline.ingest.schemes import get_scheme
from tests.scheme_cases import verify_vector

B = b'{"id":"evt_test_webhook","object":"event"}'


def verify(name: str, body: bytes, headers: dict[str, str], secret: str, **kw: Any) -> None:
    """Verify with ``secret``'s key at the vector's time (default 1700000000)."""
    verify_vector(name, body, headers, get_scheme(name).key(secret), **kw)


def sign(
    name: str, body: bytes, secret: str, timestamp: int = 1_700_000_000, **kw: str
) -> dict[str, str]:
    """The headers ``name`` signs ``body`` with."""
    scheme = get_scheme(name)
    return scheme.sign(body, scheme.key(secret), timestamp=timestamp, msg_id="m", **kw)


class TestPaddle:
    """Paddle Billing (official: paddle-python-sdk test_Verifier.py)."""

    secret = "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh"
    good = "h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02"

    def test_official_vector_after_a_junk_h1(self) -> None:
        """The second h1 of ``ts=…;h1=dummy;h1=…`` verifies (several h1 during rotation)."""
        header = f"ts=1696195954;h1=dummy;{self.good}"
        verify("paddle", b"hello-world", {"Paddle-Signature": header}, self.secret, now=1696195954)

    def test_signing_reproduces_it(self) -> None:
        """hookline signs the same h1 over ``{ts}:{body}`` with the whole secret string."""
        signed = sign("paddle", b"hello-world", self.secret, 1696195954)
        assert signed == {"Paddle-Signature": f"ts=1696195954;{self.good}"}


class TestZoom:
    """Zoom (computed from zoom/webhook-sample)."""

    secret = "zoom_secret_token_test"
    body = (
        b'{"event":"meeting.started","event_ts":1700000000123,'
        b'"payload":{"account_id":"abc","object":{"id":"123"}}}'
    )
    signature = "v0=fca5ec68926812faada6dfaaa2b7444abce89ba66593884364fe974288537027"

    def test_computed_vector(self) -> None:
        """``v0:{ts}:{body}`` signs to the computed value, which verifies."""
        headers = sign("zoom", self.body, self.secret)
        assert headers == {"x-zm-signature": self.signature, "x-zm-request-timestamp": "1700000000"}
        verify("zoom", self.body, headers, self.secret)

    def test_url_validation_answer(self) -> None:
        """``endpoint.url_validation`` is answered with the token and its HMAC (computed)."""
        scheme = get_scheme("zoom")
        body = (
            b'{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}'
        )
        answer = scheme.handshake(body, {}, scheme.key(self.secret))
        assert answer is not None and answer.status == 200
        assert orjson.loads(answer.body) == {
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": "c6fb82d8a5403f6356dbff261ddafe6b1afe9204320c8d8eb1d95a6e2c251be3",
        }
        assert scheme.handshake(self.body, {}, scheme.key(self.secret)) is None
        bad = scheme.handshake(b'{"event":"endpoint.url_validation"}', {}, scheme.key(self.secret))
        assert bad is not None and bad.status == 400


class TestSquare:
    """Square (official: square-python-sdk test_webhooks_helper.py)."""

    def test_official_vector(self) -> None:
        """The notification URL + body signs to the SDK's signature, which verifies."""
        url = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"
        body = (
            b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification",'
            b'"event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f",'
            b'"created_at":"2022-07-13T20:30:59.037339943Z",'
            b'"data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}'
        )
        headers = sign("square", body, "Ibxx_5AKakO-3qeNVR61Dw", url=url)
        assert headers == {
            "x-square-hmacsha256-signature": "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="
        }
        verify("square", body, headers, "Ibxx_5AKakO-3qeNVR61Dw", url=url)

    def test_official_escaping_vector(self) -> None:
        """The body is signed as sent: ``>id<`` stays unescaped."""
        body = b'{"data":{"type":"webhooks","id":">id<"}}'
        headers = {"x-square-hmacsha256-signature": "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U="}
        verify("square", body, headers, "signature-key", url="https://webhook.site/webhooks")
        with pytest.raises(VerificationError):
            verify("square", body, headers, "signature-key", url="https://webhook.site/other")


class TestHubSpot:
    """HubSpot v3 (official: hubspot-api-python test_signature.py)."""

    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    body = b"{'example_field':'example_value'}"
    url = "https://www.example.com/webhook_uri"
    headers: ClassVar[dict[str, str]] = {
        "X-HubSpot-Signature-v3": "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=",
        "X-HubSpot-Request-Timestamp": "1693657560000",
    }

    def test_official_vector(self) -> None:
        """``POST{uri}{body}{ms}`` signs to the SDK's value, which verifies at its time."""
        assert sign("hubspot", self.body, self.secret, 1693657560, url=self.url) == self.headers
        verify(
            "hubspot",
            self.body,
            self.headers,
            self.secret,
            url=self.url,
            now=1693657560,
            tolerance=300,
        )

    def test_timestamp_is_milliseconds(self) -> None:
        """Six minutes later the same request is stale."""
        with pytest.raises(TimestampError, match="old"):
            verify(
                "hubspot",
                self.body,
                self.headers,
                self.secret,
                url=self.url,
                now=1693657920,
                tolerance=300,
            )

    def test_uri_escapes_are_decoded(self) -> None:
        """The characters HubSpot decodes before signing verify in either form."""
        raw = "https://www.example.com/webhook_uri?a=b%3Ac%2Cd"
        headers = sign(
            "hubspot", self.body, self.secret, url="https://www.example.com/webhook_uri?a=b:c,d"
        )
        verify("hubspot", self.body, headers, self.secret, url=raw, tolerance=300)


class TestMux:
    """Mux (official: mux-node-sdk webhooks.test.ts)."""

    def test_official_vectors(self) -> None:
        """Both SDK vectors (the second keeps the body's spaces) sign and verify."""
        for body, digest in (
            (
                b'{"test":"body"}',
                "854ece4c22acef7c66b57d4e504153bc512595e8e9c772ece2a68150548c19a7",
            ),
            (
                b'{"test":{"nested":{"nanos":718234, "seconds":1691711005}}}',
                "bd315c24bce1c2b8ad325696f26530c8ef7d7d830afb7c1381903705d04607be",
            ),
        ):
            headers = sign("mux", body, "SuperSecret123", 1565125718)
            assert headers == {"Mux-Signature": f"t=1565125718,v1={digest}"}
            bad_first = {"Mux-Signature": f"t=1565125718,v1=bad,v1={digest}"}
            verify("mux", body, bad_first, "SuperSecret123", now=1565125718)


class TestTwitch:
    """Twitch EventSub (computed from twitch-cli forward_event.go)."""

    secret = "twitch_secret_0123"
    body = (
        b'{"subscription":{"type":"channel.follow"},"challenge":"pogchamp-kappa-360noscope-vohiyo"}'
    )
    headers: ClassVar[dict[str, str]] = {
        "Twitch-Eventsub-Message-Id": "befa7b53-d79d-478f-86b9-120f112b044e",
        "Twitch-Eventsub-Message-Timestamp": "2019-11-16T10:11:12.634234626Z",
        "Twitch-Eventsub-Message-Signature": (
            "sha256=443fd1a61ebd8d4da829b91b0b7ee5c355a43e4ac44996f17f01e18ddceb2e5c"
        ),
        "Twitch-Eventsub-Message-Type": "webhook_callback_verification",
    }

    def test_computed_vector(self) -> None:
        """``{id}{timestamp}{body}`` verifies at its own time, nanoseconds and all."""
        verify("twitch", self.body, self.headers, self.secret, now=1573899072, tolerance=600)

    def test_challenge_is_echoed_as_text(self) -> None:
        """The verification's challenge is answered as text/plain; a notification is not."""
        scheme = get_scheme("twitch")
        answer = scheme.handshake(self.body, self.headers, scheme.key(self.secret))
        assert answer is not None
        assert (answer.status, answer.body, answer.content_type) == (
            200,
            b"pogchamp-kappa-360noscope-vohiyo",
            "text/plain",
        )
        notification = {**self.headers, "Twitch-Eventsub-Message-Type": "notification"}
        assert scheme.handshake(self.body, notification, scheme.key(self.secret)) is None


@pytest.mark.parametrize(
    ("name", "secret", "header", "expected"),
    [
        (
            "intercom",
            "intercom_client_secret",
            "X-Hub-Signature",
            "sha1=07fef8ac27e29d3cc2ac1b1b38a6377842c7e674",
        ),
        (
            "linear",
            "lin_wh_test_secret",
            "Linear-Signature",
            "b1682d2b6550306e7d8d51b362c12a20a1499bf9937401a97954ff9251d5942e",
        ),
        (
            "bitbucket",
            "bitbucket_secret",
            "X-Hub-Signature",
            "sha256=fe8f9ff1fa058dc89fa2a4df8afb3d1f409846c2f5afe309fd71d543bb983d83",
        ),
        (
            "typeform",
            "typeform_secret",
            "Typeform-Signature",
            "sha256=Sy57ObtsTErXxQrsviNZlgJKmcfq9pox2lrWrZSjebE=",
        ),
        (
            "woocommerce",
            "wc_secret",
            "X-WC-Webhook-Signature",
            "6bv439/HKDs4OLTZqiB6cU9ruYXUb0XFPX0vw6ztKss=",
        ),
        (
            "calendly",
            "calendly_signing_key",
            "Calendly-Webhook-Signature",
            "t=1700000000,v1=5fc14fc230fefea9d9c1008a2d6875a7f6151f2c15e3a8e921061f44840ceae7",
        ),
    ],
)
class TestBodyPresets:
    """Presets over the body (computed vectors, body B of PROVIDERS.md)."""

    def test_computed_vector_signs(
        self, name: str, secret: str, header: str, expected: str
    ) -> None:
        """Signing B yields the computed signature in the provider's header."""
        assert sign(name, B, secret)[header] == expected

    def test_computed_vector_verifies(
        self, name: str, secret: str, header: str, expected: str
    ) -> None:
        """The computed signature verifies (Linear's also needs its body timestamp)."""
        if name == "linear":
            with pytest.raises(TimestampError, match="webhookTimestamp"):
                verify(name, B, {header: expected}, secret)
            return
        verify(name, B, {header: expected}, secret)


class TestLinear:
    """Linear checks the signed ``webhookTimestamp`` (milliseconds) in the body."""

    def test_timestamp_in_the_body(self) -> None:
        """A body stamped 61 s ago fails a 60 s tolerance; one stamped now verifies."""
        for stamp, ok in ((1_700_000_000_000, True), (1_699_999_939_000, False)):
            body = orjson.dumps({"type": "Issue", "webhookTimestamp": stamp})
            headers = sign("linear", body, "s")
            if ok:
                verify("linear", body, headers, "s", tolerance=60)
            else:
                with pytest.raises(TimestampError, match="old"):
                    verify("linear", body, headers, "s", tolerance=60)


class TestWooCommerce:
    """WooCommerce's unsigned creation ping and its HTML-decoded secret."""

    def test_unsigned_ping_is_answered_not_verified_as_an_event(self) -> None:
        """``webhook_id=12`` without a signature passes to its 200 answer; anything else
        unsigned is rejected."""
        scheme = get_scheme("woocommerce")
        key = scheme.verify(b"webhook_id=12", CIMultiDict(), [b"k"], tolerance=0, now=0)
        answer = scheme.handshake(b"webhook_id=12", {}, key)
        assert answer is not None and answer.status == 200
        for body in (b"webhook_id=12&x=1", b"webhook_id=", b'{"id":1}'):
            with pytest.raises(VerificationError, match="missing"):
                scheme.verify(body, CIMultiDict(), [b"k"], tolerance=0, now=0)

    def test_secret_entities_are_decoded(self) -> None:
        """A secret typed with ``&amp;`` signs as WordPress does, with ``&``."""
        scheme = get_scheme("woocommerce")
        assert scheme.key("a&amp;b&lt;c") == b"a&b<c"


class TestSharedSecrets:
    """GitLab, token and basic-auth: secrets compared in constant time, never kept."""

    def test_gitlab_token(self) -> None:
        """The token itself in ``X-Gitlab-Token`` verifies; another does not."""
        verify("gitlab", B, {"X-Gitlab-Token": "glpat-secret"}, "glpat-secret")
        with pytest.raises(VerificationError, match="matched no"):
            verify("gitlab", B, {"X-Gitlab-Token": "glpat-secreT"}, "glpat-secret")
        assert get_scheme("gitlab").secret_headers == ("x-gitlab-token",)

    def test_basic_auth_rfc7617_example(self) -> None:
        """RFC 7617's ``Aladdin:open sesame`` is ``QWxhZGRpbjpvcGVuIHNlc2FtZQ==`` (official)."""
        assert sign("basic-auth", B, "Aladdin:open sesame") == {
            "Authorization": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        }
        verify(
            "basic-auth",
            B,
            {"Authorization": "basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ=="},
            "Aladdin:open sesame",
        )
        with pytest.raises(VerificationError, match="Basic"):
            verify(
                "basic-auth",
                B,
                {"Authorization": "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="},
                "Aladdin:open sesame",
            )
        with pytest.raises(ValueError, match="user:password"):
            get_scheme("basic-auth").key("no-colon")

    def test_token_with_prefix(self) -> None:
        """The generic token scheme reads its configured header after its prefix."""
        scheme = get_scheme("token", header="Authorization", prefix="Bearer ")
        headers = CIMultiDict({"Authorization": "Bearer t0ken"})
        scheme.verify(B, headers, [b"t0ken"], tolerance=0, now=0)
        with pytest.raises(VerificationError, match="prefix"):
            scheme.verify(
                B, CIMultiDict({"Authorization": "t0ken"}), [b"t0ken"], tolerance=0, now=0
            )
        with pytest.raises(ValueError, match="signature_header"):
            get_scheme("token")
