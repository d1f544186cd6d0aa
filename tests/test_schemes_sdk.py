"""hookline's verifiers and signers against the providers' own SDKs (test-only
dependencies of the dev extra): hookline signs and the SDK verifies, and the other way
round where the SDK can sign."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlencode

import nacl.signing
from discord_interactions import verify_key
from multidict import CIMultiDict
from paddle_billing.Notifications import Secret, Verifier
from paddle_billing.Notifications.PaddleSignature import PaddleSignature
from sendgrid.helpers.eventwebhook import EventWebhook
from square.utils.webhooks_helper import verify_signature as square_verify
from twilio.request_validator import RequestValidator

from hookline.ingest.schemes import get_scheme

EVENTS = b'[{"email":"a@example.com","event":"delivered","sg_event_id":"ev1","timestamp":1}]'


class TestSendGridSdk:
    """sendgrid-python's EventWebhook (it verifies; it does not sign)."""

    def test_hookline_signs_sdk_verifies(self) -> None:
        """A request signed with a ``hookline keygen`` key verifies in the SDK with the
        printed public key, and fails once the body changes."""
        scheme = get_scheme("sendgrid")
        private, public = scheme.generate()
        headers = scheme.sign(EVENTS, scheme.signing_key(private), timestamp=1700000000, msg_id="m")
        sdk = EventWebhook(public)
        signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
        stamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
        assert sdk.verify_signature(EVENTS.decode(), signature, stamp) is True
        assert sdk.verify_signature(EVENTS.decode() + " ", signature, stamp) is False


class TestTwilioSdk:
    """twilio-python's RequestValidator (signs and verifies)."""

    url = "https://hooks.example.com/hooks/twilio?source=sms"
    params: ClassVar[dict[str, str]] = {
        "MessageSid": "SM1",
        "Body": "héllo + more",
        "From": "+15550001111",
    }

    def test_sdk_signs_hookline_verifies(self) -> None:
        """A form signed by the SDK verifies in hookline (the body as Twilio encodes it)."""
        signature = RequestValidator("auth-token").compute_signature(self.url, self.params)
        body = urlencode(self.params).encode()
        headers = CIMultiDict({"X-Twilio-Signature": signature})
        get_scheme("twilio").verify(
            body, headers, [b"auth-token"], tolerance=0, now=0, url=self.url
        )

    def test_hookline_signs_sdk_verifies(self) -> None:
        """Form and JSON requests signed by hookline validate in the SDK."""
        scheme = get_scheme("twilio")
        validator = RequestValidator("auth-token")
        body = urlencode(self.params).encode()
        signed = scheme.sign(body, b"auth-token", timestamp=0, msg_id="m", url=self.url)
        assert validator.validate(self.url, self.params, signed["X-Twilio-Signature"])
        json_body = b'{"property": "value"}'
        url = f"{self.url}&{scheme.query(json_body)}"
        signed = scheme.sign(json_body, b"auth-token", timestamp=0, msg_id="m", url=url)
        assert validator.validate(url, json_body.decode(), signed["X-Twilio-Signature"])


@dataclass
class _PaddleRequest:
    """The shape of request the Paddle SDK's Verifier reads."""

    body: bytes
    headers: dict[str, str]


class TestPaddleSdk:
    """paddle-python-sdk's Verifier and PaddleSignature (it signs with calculate_hmac)."""

    secret = "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I"
    body = b'{"event_id":"evt_01","event_type":"transaction.paid","data":{}}'

    def test_hookline_signs_sdk_verifies(self) -> None:
        """A request signed by hookline now passes the SDK's Verifier, time drift included."""
        scheme = get_scheme("paddle")
        headers = scheme.sign(
            self.body, scheme.key(self.secret), timestamp=int(time.time()), msg_id="m"
        )
        request = _PaddleRequest(self.body, headers)
        assert Verifier().verify(request, Secret(self.secret)) is True

    def test_sdk_signs_hookline_verifies(self) -> None:
        """An ``h1`` computed by the SDK verifies in hookline."""
        digest = PaddleSignature.calculate_hmac(self.secret, b"1710498758:" + self.body)
        headers = CIMultiDict({"Paddle-Signature": f"ts=1710498758;h1={digest.hexdigest()}"})
        scheme = get_scheme("paddle")
        scheme.verify(self.body, headers, [scheme.key(self.secret)], tolerance=5, now=1710498760)


class TestSquareSdk:
    """squareup's webhooks helper (it verifies; it does not sign)."""

    def test_hookline_signs_sdk_verifies(self) -> None:
        """A notification signed by hookline for a URL verifies in the SDK for that URL
        only."""
        url = "https://hooks.example.com/hooks/square"
        body = b'{"merchant_id":"M1","type":"payment.updated","event_id":"e1"}'
        signed = get_scheme("square").sign(body, b"sig-key", timestamp=0, msg_id="m", url=url)
        signature = signed["x-square-hmacsha256-signature"]
        common = {"request_body": body.decode(), "signature_header": signature}
        assert square_verify(**common, signature_key="sig-key", notification_url=url)
        assert not square_verify(**common, signature_key="sig-key", notification_url=url + "/")


class TestDiscordSdk:
    """discord-interactions (it verifies) and PyNaCl, the library it verifies with (it signs)."""

    body = b'{"id":"1","type":2,"data":{"name":"hello"}}'

    def test_hookline_signs_sdk_verifies(self) -> None:
        """A request signed with a ``hookline keygen`` key verifies in the SDK."""
        scheme = get_scheme("discord")
        private, public = scheme.generate()
        headers = scheme.sign(self.body, scheme.signing_key(private), timestamp=1, msg_id="m")
        signature, stamp = headers["X-Signature-Ed25519"], headers["X-Signature-Timestamp"]
        assert verify_key(self.body, signature, stamp, public) is True
        assert verify_key(self.body + b" ", signature, stamp, public) is False

    def test_nacl_signs_hookline_verifies(self) -> None:
        """A signature made with PyNaCl verifies in hookline with the hex public key."""
        signer = nacl.signing.SigningKey.generate()
        signature = signer.sign(b"1700000000" + self.body).signature.hex()
        headers = CIMultiDict(
            {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": "1700000000"}
        )
        scheme = get_scheme("discord")
        public = scheme.public_key(signer.verify_key.encode().hex())
        assert scheme.verify(self.body, headers, [public], tolerance=0, now=0) is public
