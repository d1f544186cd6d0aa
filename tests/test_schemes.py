"""The first seven signature schemes: official vectors and their particular rules.

The promises every scheme keeps are in tests/test_schemes_every.py."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from multidict import CIMultiDict

from hookline.errors import TimestampError, VerificationError
from hookline.ingest.schemes import SCHEME_NAMES, get_scheme

NOW = 1_700_000_000
TOLERANCE = 300.0
BODY = b'{"id":"evt_test_webhook","object":"event","type":"ping"}'
NON_UTF8_BODY = b"\xff\xfe\x00\x80 not utf-8 \xc3\x28"


def one_off(value: str) -> str:
    """Change one character in the middle of ``value``, staying within hex and base64."""
    i = len(value) // 2
    return value[:i] + ("b" if value[i] == "a" else "a") + value[i + 1 :]


class TestStandardWebhooks:
    """Standard Webhooks: ``v1,<base64>`` over ``{id}.{timestamp}.{body}``."""

    scheme = get_scheme("standard-webhooks")
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def headers(self, signature: str) -> CIMultiDict[str]:
        """Return the official vector's headers with ``signature``."""
        return CIMultiDict(
            {
                "webhook-id": self.msg_id,
                "webhook-timestamp": "1614265330",
                "webhook-signature": signature,
            }
        )

    def verify(self, signature: str) -> None:
        """Verify the official vector's body with ``signature``."""
        key = self.scheme.key(self.secret)
        self.scheme.verify(self.body, self.headers(signature), [key], tolerance=300, now=1614265330)

    def test_official_vector_signs(self) -> None:
        """Signing the official vector yields the published signature and headers."""
        key = self.scheme.key(self.secret)
        assert self.scheme.sign(self.body, key, timestamp=1614265330, msg_id=self.msg_id) == {
            "webhook-id": self.msg_id,
            "webhook-timestamp": "1614265330",
            "webhook-signature": self.expected,
        }

    def test_official_vector_verifies(self) -> None:
        """The published signature verifies."""
        self.verify(self.expected)

    def test_only_v1_entries_count(self) -> None:
        """A ``v2,`` entry carrying the right digest is ignored; only ``v1`` entries count."""
        digest = self.expected.removeprefix("v1,")
        self.verify(f"v2,{digest} v1,{digest}")
        with pytest.raises(VerificationError, match="v1"):
            self.verify(f"v2,{digest} v1,{one_off(digest)}")

    def test_malformed_entries_are_tolerated(self) -> None:
        """Entries without a comma, with bad base64 or empty are skipped, not fatal."""
        self.verify(f"garbage v1 v1,!!not-base64!! v1, {self.expected}")

    def test_only_malformed_entries_are_rejected(self) -> None:
        """A header with no well-formed ``v1`` entry is rejected."""
        with pytest.raises(VerificationError, match="no well-formed v1"):
            self.verify("garbage v1,!!! v2,abc=")

    def test_secret_without_padding(self) -> None:
        """A secret whose base64 padding was dropped gives the same key as the padded one."""
        padded = "whsec_" + base64.b64encode(b"sixteen byte key").decode()
        assert padded.endswith("==")
        unpadded = padded.rstrip("=")
        assert self.scheme.key(unpadded) == self.scheme.key(padded) == b"sixteen byte key"

    def test_secret_without_prefix(self) -> None:
        """The ``whsec_`` prefix is optional."""
        bare = self.secret.removeprefix("whsec_")
        assert self.scheme.key(bare) == self.scheme.key(self.secret)

    def test_bad_base64_secret(self) -> None:
        """A secret that is not base64 is refused with a ValueError that does not quote it."""
        with pytest.raises(ValueError, match="base64") as info:
            self.scheme.key("whsec_not*base64!")
        assert "not*base64" not in str(info.value)

    def test_empty_secret(self) -> None:
        """An empty secret (or a bare prefix) is refused."""
        for secret in ("", "whsec_"):
            with pytest.raises(ValueError, match="empty"):
                self.scheme.key(secret)


class TestSvix:
    """Svix: Standard Webhooks under ``svix-`` header names."""

    scheme = get_scheme("svix")

    def test_official_vector_under_svix_headers(self) -> None:
        """The Standard Webhooks vector signs identically under ``svix-`` headers."""
        key = self.scheme.key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        headers = self.scheme.sign(
            b'{"test": 2432232314}',
            key,
            timestamp=1614265330,
            msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        )
        assert headers == {
            "svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "svix-timestamp": "1614265330",
            "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        }

    def test_webhook_headers_are_not_enough(self) -> None:
        """A request carrying ``webhook-`` headers instead of ``svix-`` ones is rejected."""
        sw = get_scheme("standard-webhooks")
        key = sw.key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        headers = CIMultiDict(sw.sign(BODY, key, timestamp=NOW, msg_id="msg_1"))
        with pytest.raises(VerificationError, match="svix-"):
            self.scheme.verify(BODY, headers, [key], tolerance=TOLERANCE, now=NOW)

    def test_locators(self) -> None:
        """The event id comes from ``svix-id`` and ``svix-`` headers are kept."""
        assert self.scheme.default_id == ("header:svix-id",)
        assert self.scheme.header_prefixes == ("svix-",)


class TestStripe:
    """Stripe: ``t=<unix>,v1=<hex>`` over ``{t}.{body}`` keyed by the raw secret."""

    scheme = get_scheme("stripe")
    secret = "whsec_test_secret"
    body = b'{"id":"evt_test_webhook","object":"event"}'
    expected = "v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"

    def verify(self, header: str, now: float = 1700000000) -> None:
        """Verify the computed vector's body with a ``Stripe-Signature`` header."""
        headers = CIMultiDict({"Stripe-Signature": header})
        key = self.scheme.key(self.secret)
        self.scheme.verify(self.body, headers, [key], tolerance=300, now=now)

    def test_computed_vector_signs(self) -> None:
        """Signing the computed vector yields the documented header."""
        key = self.scheme.key(self.secret)
        headers = self.scheme.sign(self.body, key, timestamp=1700000000, msg_id="ignored")
        assert headers == {"Stripe-Signature": f"t=1700000000,{self.expected}"}

    def test_key_is_the_secret_as_is(self) -> None:
        """The ``whsec_`` secret is used as UTF-8 bytes, not base64-decoded."""
        assert self.scheme.key(self.secret) == b"whsec_test_secret"

    def test_v0_and_several_v1(self) -> None:
        """With ``v0`` and several ``v1`` entries, any matching ``v1`` is accepted."""
        v0 = "v0=" + "0" * 64
        wrong = "v1=" + "1" * 64
        self.verify(f"t=1700000000,{v0},{wrong},{self.expected}")

    def test_v0_alone_is_rejected(self) -> None:
        """A ``v0`` entry with the right digest does not count."""
        digest = self.expected.removeprefix("v1=")
        with pytest.raises(VerificationError, match="v1"):
            self.verify(f"t=1700000000,v0={digest}")

    def test_missing_t_is_a_timestamp_error(self) -> None:
        """A header without ``t=`` is rejected as a timestamp problem."""
        with pytest.raises(TimestampError):
            self.verify(self.expected)

    def test_signed_timestamp_is_the_one_checked(self) -> None:
        """Changing ``t`` breaks the signature even inside the tolerance."""
        with pytest.raises(VerificationError, match="no v1 signature matched"):
            self.verify(f"t=1700000001,{self.expected}")


class TestGitHub:
    """GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body."""

    scheme = get_scheme("github")
    secret = "It's a Secret to Everybody"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

    def test_official_vector_signs(self) -> None:
        """Signing the docs' vector yields the published signature, and the delivery id."""
        key = self.scheme.key(self.secret)
        headers = self.scheme.sign(b"Hello, World!", key, timestamp=0, msg_id="guid-1")
        assert headers == {"X-Hub-Signature-256": self.expected, "X-GitHub-Delivery": "guid-1"}

    def test_official_vector_verifies_with_lower_case_header(self) -> None:
        """The published signature verifies, whatever the header name's case."""
        headers = CIMultiDict({"x-hub-signature-256": self.expected})
        key = self.scheme.key(self.secret)
        self.scheme.verify(b"Hello, World!", headers, [key], tolerance=0, now=0)

    def test_missing_prefix_is_rejected(self) -> None:
        """A bare hex digest without ``sha256=`` is rejected."""
        headers = CIMultiDict({"X-Hub-Signature-256": self.expected.removeprefix("sha256=")})
        with pytest.raises(VerificationError, match="prefix"):
            self.scheme.verify(
                b"Hello, World!", headers, [self.scheme.key(self.secret)], tolerance=0, now=0
            )

    def test_locators(self) -> None:
        """Id and type come from the delivery and event headers."""
        assert self.scheme.default_id == ("header:x-github-delivery",)
        assert self.scheme.default_type == ("header:x-github-event",)
        assert not self.scheme.uses_timestamp


class TestShopify:
    """Shopify: ``X-Shopify-Hmac-Sha256: <base64>`` over the raw body."""

    scheme = get_scheme("shopify")
    body = b'{"id":"evt_test_webhook","object":"event"}'
    expected = "sc09ox6/ccNcTmXNHMwNZCGEwOIRL5Kb2Fuxjo74LiA="

    def test_computed_vector_signs(self) -> None:
        """Signing the computed vector yields the documented signature and the id headers."""
        headers = self.scheme.sign(self.body, self.scheme.key("hush"), timestamp=NOW, msg_id="e-1")
        assert headers == {
            "X-Shopify-Hmac-Sha256": self.expected,
            "X-Shopify-Event-Id": "e-1",
            "X-Shopify-Webhook-Id": "e-1",
            "X-Shopify-Triggered-At": "2023-11-14T22:13:20Z",
        }

    def test_computed_vector_verifies(self) -> None:
        """The documented signature verifies."""
        headers = CIMultiDict({"X-Shopify-Hmac-Sha256": self.expected})
        self.scheme.verify(self.body, headers, [self.scheme.key("hush")], tolerance=0, now=0)

    def test_hex_is_rejected(self) -> None:
        """The right digest in hex instead of base64 is rejected."""
        hex_digest = base64.b64decode(self.expected).hex()
        headers = CIMultiDict({"X-Shopify-Hmac-Sha256": hex_digest})
        with pytest.raises(VerificationError):
            self.scheme.verify(self.body, headers, [self.scheme.key("hush")], tolerance=0, now=0)

    def test_locators(self) -> None:
        """The event id falls back from the event id to the webhook id header."""
        assert self.scheme.default_id == (
            "header:x-shopify-event-id",
            "header:x-shopify-webhook-id",
        )
        assert self.scheme.default_type == ("header:x-shopify-topic",)


class TestSlack:
    """Slack: ``v0=<hex>`` over ``v0:{timestamp}:{body}``."""

    scheme = get_scheme("slack")
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
        b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
        b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
        b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

    def test_official_vector_signs(self) -> None:
        """Signing the SDK's vector yields the published signature and timestamp header."""
        key = self.scheme.key(self.secret)
        assert self.scheme.sign(self.body, key, timestamp=1531420618, msg_id="x") == {
            "X-Slack-Signature": self.expected,
            "X-Slack-Request-Timestamp": "1531420618",
        }

    def test_official_vector_verifies(self) -> None:
        """The published signature verifies at its own time."""
        headers = CIMultiDict(
            {"X-Slack-Signature": self.expected, "X-Slack-Request-Timestamp": "1531420618"}
        )
        key = self.scheme.key(self.secret)
        self.scheme.verify(self.body, headers, [key], tolerance=300, now=1531420618)

    def test_other_version_is_rejected(self) -> None:
        """The right digest under a version other than ``v0`` is rejected."""
        headers = CIMultiDict(
            {
                "X-Slack-Signature": "v1=" + self.expected.removeprefix("v0="),
                "X-Slack-Request-Timestamp": "1531420618",
            }
        )
        with pytest.raises(VerificationError, match="v0"):
            self.scheme.verify(
                self.body, headers, [self.scheme.key(self.secret)], tolerance=300, now=1531420618
            )

    def test_locators(self) -> None:
        """The type is read from ``event.type`` first, then ``type``."""
        assert self.scheme.default_id == ("body:event_id",)
        assert self.scheme.default_type == ("body:event.type", "body:type")


class TestHmac:
    """The generic scheme: configurable header, prefix, encoding and algorithm."""

    @pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
    @pytest.mark.parametrize("encoding", ["hex", "base64"])
    def test_matches_hashlib(self, algorithm: str, encoding: str) -> None:
        """The header carries prefix + the encoded HMAC of the raw body, as configured."""
        scheme = get_scheme(
            "hmac", header="X-Sig", prefix="h=", encoding=encoding, algorithm=algorithm
        )
        raw = hmac.new(b"k", BODY, getattr(hashlib, algorithm)).digest()
        encoded = raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()
        assert scheme.sign(BODY, scheme.key("k"), timestamp=0, msg_id="m") == {
            "X-Sig": f"h={encoded}"
        }

    def test_base64_with_prefix_round_trip(self) -> None:
        """A base64 signature with a ``sha256=`` prefix verifies under its configured header."""
        scheme = get_scheme(
            "hmac", header="X-Webhook-Signature", prefix="sha256=", encoding="base64"
        )
        headers = CIMultiDict(scheme.sign(BODY, b"key", timestamp=0, msg_id="m"))
        assert headers["x-webhook-signature"].startswith("sha256=")
        scheme.verify(BODY, headers, [b"key"], tolerance=0, now=0)

    def test_wrong_prefix_is_rejected(self) -> None:
        """A value without the configured prefix is rejected."""
        scheme = get_scheme("hmac", header="X-Sig", prefix="sha256=")
        headers = CIMultiDict(
            {"X-Sig": "sha1=" + scheme.sign(BODY, b"k", timestamp=0, msg_id="m")["X-Sig"][7:]}
        )
        with pytest.raises(VerificationError, match="prefix"):
            scheme.verify(BODY, headers, [b"k"], tolerance=0, now=0)

    def test_other_algorithm_is_rejected(self) -> None:
        """A sha1 signature does not verify under a sha256 configuration."""
        sha1 = get_scheme("hmac", header="X-Sig", algorithm="sha1")
        sha256 = get_scheme("hmac", header="X-Sig")
        headers = CIMultiDict(sha1.sign(BODY, b"k", timestamp=0, msg_id="m"))
        with pytest.raises(VerificationError):
            sha256.verify(BODY, headers, [b"k"], tolerance=0, now=0)


class TestGetScheme:
    """Looking schemes up by their configured name."""

    def test_every_name(self) -> None:
        """Every listed name gives a scheme of that name."""
        assert len(SCHEME_NAMES) == len(set(SCHEME_NAMES)) >= 25
        for name in SCHEME_NAMES:
            assert get_scheme(name, header="X-Sig").name == name

    def test_class_attributes(self) -> None:
        """Header prefixes are lower case and locators name a header or a body path."""
        for name in SCHEME_NAMES:
            scheme = get_scheme(name, header="X-Sig")
            assert all(p == p.lower() for p in scheme.header_prefixes)
            for locator in scheme.default_id + scheme.default_type:
                kind, _, where = locator.partition(":")
                assert kind in ("header", "body") and where
                assert kind == "body" or where == where.lower()

    def test_unknown_name(self) -> None:
        """An unknown name is refused with the list of known ones."""
        with pytest.raises(ValueError, match=r"unknown scheme 'paypal'.*standard-webhooks"):
            get_scheme("paypal")

    def test_hmac_without_header(self) -> None:
        """The generic scheme needs a header name."""
        with pytest.raises(ValueError, match="header"):
            get_scheme("hmac")

    def test_unknown_encoding(self) -> None:
        """An unknown encoding is refused."""
        with pytest.raises(ValueError, match="encoding 'base32'"):
            get_scheme("hmac", header="X-Sig", encoding="base32")

    def test_unknown_algorithm(self) -> None:
        """An unknown algorithm is refused."""
        with pytest.raises(ValueError, match="algorithm 'md5'"):
            get_scheme("hmac", header="X-Sig", algorithm="md5")

    def test_hmac_options_do_not_affect_fixed_schemes(self) -> None:
        """Generic options given to a fixed scheme are ignored."""
        scheme = get_scheme("github", header="X-Other", encoding="base64", algorithm="sha1")
        assert scheme.sign(b"", b"k", timestamp=0, msg_id="m").keys() == {
            "X-Hub-Signature-256",
            "X-GitHub-Delivery",
        }
