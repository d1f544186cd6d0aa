"""Each new scheme against its provider's test vector.

"official": published by the provider (its SDK's tests or docs) and reproduced here;
"computed": no vector is published, so the value was computed from the documented
algorithm (with hashlib, hmac or cryptography directly) and is pinned here. Sources are
in ../shared/PROVIDERS.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from multidict import CIMultiDict

from hookline.errors import VerificationError
from hookline.ingest.schemes import Key, get_scheme
from tests.scheme_cases import verify_vector as verify

#: B in PROVIDERS.md: the body of most computed vectors.
B = b'{"id":"evt_test_webhook","object":"event"}'


class TestSendGrid:
    """SendGrid (official: sendgrid-python test_eventwebhook.py)."""

    scheme = get_scheme("sendgrid")
    public = (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
        "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
    )
    body = (
        b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
        b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
        b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
        b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]'
        b"\r\n"
    )
    headers: ClassVar[dict[str, str]] = {
        "X-Twilio-Email-Event-Webhook-Signature": (
            "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
        ),
        "X-Twilio-Email-Event-Webhook-Timestamp": "1600112502",
    }

    def test_official_vector_verifies(self) -> None:
        """The SDK's signature verifies with the SDK's verification key."""
        key = self.scheme.public_key(self.public)
        assert verify("sendgrid", self.body, self.headers, key) is key

    def test_trailing_crlf_is_signed(self) -> None:
        """The vector fails once its trailing CRLF is dropped: the raw bytes are signed."""
        with pytest.raises(VerificationError):
            verify("sendgrid", self.body[:-2], self.headers, self.scheme.public_key(self.public))

    def test_pem_key_is_accepted(self) -> None:
        """The same key as a PEM block verifies too."""
        pem = f"-----BEGIN PUBLIC KEY-----\n{self.public}\n-----END PUBLIC KEY-----\n"
        verify("sendgrid", self.body, self.headers, self.scheme.public_key(pem))

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("not base64!", "not valid base64"),
            ("AAAA", "not a DER or PEM"),
            # An Ed25519 SPKI: a public key, but not on P-256.
            ("MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "P-256"),
        ],
    )
    def test_malformed_public_key(self, text: str, message: str) -> None:
        """A verification key that is not base64, not DER or not P-256 is refused."""
        with pytest.raises(ValueError, match=message):
            self.scheme.public_key(text)

    def test_locators(self) -> None:
        """A batch is one event, its id and type those of the first element."""
        assert self.scheme.default_id == ("body:0.sg_event_id",)
        assert self.scheme.default_type == ("body:0.event",)


#: RFC 8032 §7.1 test 1: the Ed25519 secret seed and public key.
RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


class TestStandardWebhooksV1a:
    """Standard Webhooks v1a (computed from the spec with the RFC 8032 test 1 key pair)."""

    scheme = get_scheme("standard-webhooks")
    private = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
    public = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    body = b'{"test": 2432232314}'
    v1a = (
        "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHF"
        "G2NVAw=="
    )
    v1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    def headers(self, signature: str) -> dict[str, str]:
        """The vector's headers with ``signature``."""
        return {
            "webhook-id": self.msg_id,
            "webhook-timestamp": "1614265330",
            "webhook-signature": signature,
        }

    def check(self, signature: str, *keys: Key) -> Key:
        """Verify the vector at its own time against ``keys``."""
        return self.scheme.verify(
            self.body,
            CIMultiDict(self.headers(signature)),
            list(keys),
            tolerance=300,
            now=1614265330,
        )

    def test_keys_are_rfc8032_test_1(self) -> None:
        """The whsk_/whpk_ texts hold RFC 8032's seed and public key."""
        private = self.scheme.signing_key(self.private)
        public = self.scheme.public_key(self.public)
        assert isinstance(private, Ed25519PrivateKey) and isinstance(public, Ed25519PublicKey)
        assert private.private_bytes_raw().hex() == RFC8032_SEED
        assert public.public_bytes_raw().hex() == RFC8032_PUBLIC

    def test_computed_vector_signs(self) -> None:
        """Signing with the private key yields the computed v1a entry (Ed25519 is
        deterministic)."""
        key = self.scheme.signing_key(self.private)
        headers = self.scheme.sign(self.body, key, timestamp=1614265330, msg_id=self.msg_id)
        assert headers == self.headers(self.v1a)

    def test_computed_vector_verifies(self) -> None:
        """The v1a entry verifies with the public key, and the key is returned."""
        public = self.scheme.public_key(self.public)
        assert self.check(self.v1a, public) is public

    def test_v1_and_v1a_in_one_source(self) -> None:
        """A source with a whsec_ secret and a whpk_ key accepts either entry, alone or
        side by side; an entry never matches a key of the other version."""
        secret, public = self.scheme.key(self.secret), self.scheme.public_key(self.public)
        assert self.check(self.v1, secret, public) == secret
        assert self.check(self.v1a, secret, public) is public
        assert self.check(f"{self.v1} {self.v1a}", public) is public
        assert self.check(f"{self.v1a} {self.v1}", secret) == secret
        with pytest.raises(VerificationError, match="matched"):
            self.check(self.v1a, secret)
        with pytest.raises(VerificationError, match="matched"):
            self.check(self.v1, public)

    def test_v1a_signature_under_v1_does_not_count(self) -> None:
        """The Ed25519 signature listed as ``v1`` is not checked as one."""
        with pytest.raises(VerificationError):
            self.check("v1," + self.v1a.removeprefix("v1a,"), self.scheme.public_key(self.public))

    def test_keys_in_the_wrong_list(self) -> None:
        """A whpk_ key among secrets, or a whsec_ secret among public keys, is refused."""
        with pytest.raises(ValueError, match="public_keys"):
            self.scheme.key(self.public)
        with pytest.raises(ValueError, match="not a public key"):
            self.scheme.public_key(self.secret)
        with pytest.raises(ValueError, match="32"):
            self.scheme.public_key("whpk_AAAA")


class TestDiscord:
    """Discord (computed, RFC 8032 test 1 key; body from discord-interactions-js)."""

    scheme = get_scheme("discord")
    body = (
        b'{"id":"787053080478613555","token":"ThisIsATokenFromDiscordThatIsVeryLong",'
        b'"type":1,"version":1}'
    )
    signature = (
        "f0bd878adcef1f6d475c9644421905bd02b5de38e0d3ecfc6f58a711962c69cc"
        "c8dd7c9db312f9bdf08b1e1b8182e27a844da728c5e0dbb5507bf9931c1ed80b"
    )

    def test_computed_vector_signs_and_verifies(self) -> None:
        """The seed signs the computed signature, which the public key verifies."""
        key = self.scheme.signing_key(RFC8032_SEED)
        headers = self.scheme.sign(self.body, key, timestamp=1_700_000_000, msg_id="x")
        assert headers == {
            "X-Signature-Ed25519": self.signature,
            "X-Signature-Timestamp": "1700000000",
        }
        verify("discord", self.body, headers, self.scheme.public_key(RFC8032_PUBLIC))

    def test_ping_is_answered_with_pong(self) -> None:
        """An interactions PING (type 1) is answered ``{"type":1}``; a webhook-events PING
        (type 0) with 204; a webhook event of type 1 is an event."""
        key = self.scheme.public_key(RFC8032_PUBLIC)
        pong = self.scheme.handshake(self.body, {}, key)
        assert pong is not None and (pong.status, pong.body) == (200, b'{"type":1}')
        ping = self.scheme.handshake(b'{"version":1,"type":0}', {}, key)
        assert ping is not None and (ping.status, ping.body) == (204, b"")
        event = b'{"version":1,"type":1,"event":{"type":"APPLICATION_AUTHORIZED"}}'
        assert self.scheme.handshake(event, {}, key) is None
        assert self.scheme.handshake(b'{"type":2,"id":"1"}', {}, key) is None
        assert self.scheme.handshake(b'{"type":true}', {}, key) is None

    @pytest.mark.parametrize("text", ["zz", "d75a98", RFC8032_PUBLIC + "00"])
    def test_malformed_public_key(self, text: str) -> None:
        """A public key that is not 64 hex digits is refused."""
        with pytest.raises(ValueError, match=r"hex|32"):
            self.scheme.public_key(text)


class TestTwilio:
    """Twilio (official: twilio-python test_request_validator.py)."""

    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    form = (
        b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234"
        b"&From=%2B14158675309&To=%2B18005551212"
    )

    def check(self, body: bytes, signature: str, url: str) -> None:
        """Verify with the SDK's auth token."""
        verify("twilio", body, {"X-Twilio-Signature": signature}, b"12345", url=url)

    def test_official_form_vector(self) -> None:
        """The form vector verifies, and signing reproduces it."""
        self.check(self.form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", self.url)
        signed = get_scheme("twilio").sign(
            self.form, b"12345", timestamp=0, msg_id="m", url=self.url
        )
        assert signed["X-Twilio-Signature"] == "RSOYDt4T1cUTdK1PDd93/VVr8B8="

    @pytest.mark.parametrize(
        ("url", "signature"),
        [
            ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
            ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            ("https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
            ("http://mycompany.com:80/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
            ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        ],
    )
    def test_official_port_vectors(self, url: str, signature: str) -> None:
        """A URL with or without its default port matches either signature, as in the SDK."""
        self.check(self.form, signature, url)

    def test_official_repeated_keys_vector(self) -> None:
        """Repeated parameter names sign each distinct value, sorted."""
        body = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234"
        self.check(body, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", self.url)

    def test_official_json_vector(self) -> None:
        """A JSON body is covered by bodySHA256 in the signed URL."""
        body = b'{"property": "value", "boolean": true}'
        digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        assert get_scheme("twilio").query(body) == f"bodySHA256={digest}"
        self.check(body, "a9nBmqA0ju/hNViExpshrM61xv4=", f"{self.url}&bodySHA256={digest}")

    def test_json_body_not_matching_its_hash(self) -> None:
        """A JSON body that does not hash to the URL's bodySHA256 is rejected."""
        digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        with pytest.raises(VerificationError, match="bodySHA256"):
            self.check(
                b'{"property": "other"}',
                "a9nBmqA0ju/hNViExpshrM61xv4=",
                f"{self.url}&bodySHA256={digest}",
            )

    def test_other_url_fails(self) -> None:
        """The signature does not verify against another URL (the proxy's, say)."""
        with pytest.raises(VerificationError, match="matched"):
            self.check(
                self.form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "http://10.0.0.5:8080/hooks/twilio"
            )

    def test_no_public_url(self) -> None:
        """Without the URL the provider signed nothing verifies."""
        with pytest.raises(VerificationError, match="public_url"):
            self.check(self.form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "")


class TestMailgun:
    """Mailgun (computed from its "Securing Webhooks" algorithm)."""

    scheme = get_scheme("mailgun")
    token = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
    signature = "dd2cc8ecd382b570fc827bed3d5c5e1374c762d323601acabf69edad67155fbb"

    def body(self, **overrides: str) -> bytes:
        """A JSON body with the vector's signature object."""
        sig = {"timestamp": "1700000000", "token": self.token, "signature": self.signature}
        sig.update(overrides)
        return orjson.dumps({"signature": sig, "event-data": {"id": "ev1", "event": "delivered"}})

    def test_computed_vector(self) -> None:
        """The vector verifies, its token is read, and the HMAC is the documented one."""
        expected = hmac.new(
            b"key-test-signing", b"1700000000" + self.token.encode(), hashlib.sha256
        )
        assert expected.hexdigest() == self.signature
        verify("mailgun", self.body(), {}, b"key-test-signing")
        assert self.scheme.token(self.body(), {}) == self.token

    def test_legacy_form_body(self) -> None:
        """The legacy form webhooks carry the same three fields as form fields."""
        form = f"timestamp=1700000000&token={self.token}&signature={self.signature}&event=x"
        verify("mailgun", form.encode(), {}, b"key-test-signing")

    @pytest.mark.parametrize("field", ["token", "signature"])
    def test_changed_fields_fail(self, field: str) -> None:
        """A changed token or signature fails."""
        with pytest.raises(VerificationError):
            verify("mailgun", self.body(**{field: "0" * 64}), {}, b"key-test-signing")

    def test_overlong_token(self) -> None:
        """A token too long to be Mailgun's is refused before it reaches a Redis key."""
        with pytest.raises(VerificationError, match="longer"):
            self.scheme.token(self.body(token="t" * 300), {})

    @pytest.mark.parametrize(
        "body", [b"", b"[]", b'{"signature": 1}', b'{"signature": {"token": 1}}', b"\xff"]
    )
    def test_malformed_body(self, body: bytes) -> None:
        """A body without a well-formed signature object is rejected."""
        with pytest.raises(VerificationError):
            verify("mailgun", body, {}, b"key-test-signing")
