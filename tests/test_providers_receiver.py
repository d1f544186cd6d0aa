"""Every scheme through the real receiver and a real Redis: accepted with its default id
and type, bad input refused with 400/401 (never 500), handshakes answered only once
verified and never enqueued, Mailgun tokens used once, key configuration checked."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient

from hookline.cli.send import SignedRequest, build_request
from hookline.config.schema import SCHEMES
from hookline.config.settings import Settings, load_settings, parse_settings
from hookline.errors import ConfigError
from hookline.ingest.schemes import SCHEME_NAMES
from hookline.ingest.sources import prepare_source
from hookline.redis import keys
from tests.helpers import queued_envelopes
from tests.scheme_cases import CASES, IDS, URL, Case
from tests.test_config import EXAMPLE, EXAMPLE_ENV

Client = TestClient[Any, Any]


def source_table(case: Case) -> dict[str, Any]:
    """A source configured for ``case``: its keys, options and public URL."""
    table: dict[str, Any] = {"scheme": case.name, "queue": "providers"}
    if case.asymmetric or case.name == "standard-webhooks":
        table["public_keys"] = [public for _, public in case.pairs()]
    if not case.asymmetric:
        table["secrets"] = list(case.secrets)
    if case.scheme.signs_url:
        table["public_url"] = URL.replace("/case", f"/{case.name}")
    if "header" in case.options:
        table["signature_header"] = case.options["header"]
        table["signature_prefix"] = case.options.get("prefix", "")
        table["signature_encoding"] = case.options.get("encoding", "hex")
    return table


def provider_settings(redis_url: str, **extra: dict[str, Any]) -> Settings:
    """One source per scheme, named after it, plus ``extra`` sources."""
    sources = {case.name: source_table(case) for case in CASES}
    sources.update(extra)
    return parse_settings({"redis": {"url": redis_url}, "sources": sources}, {})


@pytest.fixture
async def providers(redis_url: str, client_for: Any) -> Client:
    """A receiver with one source per scheme."""
    client: Client = await client_for(provider_settings(redis_url), redis_url)
    return client


def request_for(client: Client, case: Case, **kw: Any) -> SignedRequest:
    """What ``hookline send`` signs for ``case``'s source, aimed at the test server."""
    private = case.pairs()[0][0] if case.asymmetric else None
    settings = provider_settings("redis://unused")
    url = f"http://{client.host}:{client.port}/hooks/{case.name}"
    return build_request(settings, case.name, url=url, private_key=private, **kw)


async def post(client: Client, request: SignedRequest, **changes: Any) -> Any:
    """POST ``request`` (with ``body`` or ``headers`` replaced) to the test server."""
    path = "/" + request.url.split("/", 3)[3]
    body = changes.get("body", request.body)
    headers = changes.get("headers", request.headers)
    return await client.post(path, data=body, headers=headers)


@pytest.mark.parametrize("case", CASES, ids=IDS)
class TestEverySchemeThroughTheReceiver:
    """Each scheme's signed request, and its bad variants, over HTTP."""

    async def test_signed_request_is_enqueued_with_default_id_and_type(
        self, case: Case, providers: Client, r: redis.Redis
    ) -> None:
        """A request signed like the provider is answered 202 and stored, its id and type
        read by the scheme's default locators; a second delivery is a duplicate."""
        request = request_for(providers, case, event_type="thing.happened")
        resp = await post(providers, request)
        assert resp.status == 202, await resp.text()
        [envelope] = queued_envelopes(r, "providers")
        assert (envelope.source, envelope.id, envelope.type) == (
            case.name,
            request.event_id,
            "thing.happened",
        )
        assert envelope.body == request.body
        for hidden in case.scheme.secret_headers:
            assert hidden not in envelope.headers
        again = await post(providers, request)
        assert again.status == (401 if case.scheme.single_use_tokens else 200)

    async def test_bad_input_is_refused_never_500(
        self, case: Case, providers: Client, r: redis.Redis
    ) -> None:
        """Tampered bodies, missing and garbled headers get 400 or 401, and nothing is
        enqueued."""
        request = request_for(providers, case)
        variants: list[dict[str, Any]] = []
        if case.required:
            variants.append({"headers": {"Content-Type": "application/json"}})
        if case.signs_body:
            variants.append({"body": request.body + b" "})
        for name in case.required:
            for junk in ("", "!!!", "zz", "v1,AAAA", "t=1,v1=zz", "\u00e9"):
                headers = {k: v for k, v in request.headers.items() if k.lower() != name.lower()}
                variants.append({"headers": {**headers, name: junk}})
        if not case.scheme.signature_header:  # Mailgun: the signature is in the body
            variants.append({"body": request.body.replace(b'"signature":"', b'"signature":"0')})
        for variant in variants:
            resp = await post(providers, request, **variant)
            assert resp.status in (400, 401), (variant, resp.status, await resp.text())
        assert queued_envelopes(r, "providers") == []


def signed_headers(case: Case, body: bytes, **kw: Any) -> dict[str, str]:
    """Headers ``case``'s provider sends for ``body`` (to its public URL)."""
    url = URL.replace("/case", f"/{case.name}") if case.scheme.signs_url else ""
    key = case.signing_key()
    return case.scheme.sign(
        body, key, timestamp=kw.get("timestamp", 0) or _now(), msg_id="m", url=url
    )


def _now() -> int:
    return int(time.time())


def case_named(name: str) -> Case:
    """The case of scheme ``name``."""
    return CASES[IDS.index(name)]


class TestHandshakes:
    """Handshakes are answered only after verification, and never enqueued."""

    async def expect(
        self, client: Client, r: redis.Redis, name: str, body: bytes, status: int
    ) -> Any:
        """POST ``body`` signed for source ``name``; check the status and that nothing
        was enqueued; return the response."""
        case = case_named(name)
        headers = signed_headers(case, body)
        if name == "twitch":
            headers["Twitch-Eventsub-Message-Type"] = "webhook_callback_verification"
        resp = await client.post(f"/hooks/{name}", data=body, headers=headers)
        assert resp.status == status, await resp.text()
        assert queued_envelopes(r, "providers") == []
        return resp

    async def test_discord_ping_gets_pong(self, providers: Client, r: redis.Redis) -> None:
        """A signed interactions PING gets ``{"type": 1}``; a webhook-events PING a 204."""
        resp = await self.expect(providers, r, "discord", b'{"id":"1","type":1,"token":"t"}', 200)
        assert await resp.json() == {"type": 1}
        await self.expect(providers, r, "discord", b'{"version":1,"type":0}', 204)

    async def test_zoom_url_validation(self, providers: Client, r: redis.Redis) -> None:
        """A signed ``endpoint.url_validation`` gets the token and its HMAC."""
        body = b'{"event":"endpoint.url_validation","payload":{"plainToken":"abc"}}'
        resp = await self.expect(providers, r, "zoom", body, 200)
        answer = await resp.json()
        assert answer["plainToken"] == "abc" and len(answer["encryptedToken"]) == 64

    async def test_twitch_challenge_as_text(self, providers: Client, r: redis.Redis) -> None:
        """A signed callback verification gets its challenge back as text/plain."""
        body = b'{"challenge":"pogchamp","subscription":{"type":"channel.follow"}}'
        resp = await self.expect(providers, r, "twitch", body, 200)
        assert resp.content_type == "text/plain" and await resp.text() == "pogchamp"

    async def test_woocommerce_creation_ping(self, providers: Client, r: redis.Redis) -> None:
        """WooCommerce's unsigned ``webhook_id=N`` ping gets 200 and is not enqueued."""
        resp = await providers.post("/hooks/woocommerce", data=b"webhook_id=42")
        assert resp.status == 200
        assert queued_envelopes(r, "providers") == []

    @pytest.mark.parametrize(
        ("name", "body"),
        [
            ("discord", b'{"id":"1","type":1,"token":"t"}'),
            ("zoom", b'{"event":"endpoint.url_validation","payload":{"plainToken":"abc"}}'),
            ("twitch", b'{"challenge":"pogchamp"}'),
            ("slack", b'{"type":"url_verification","challenge":"c"}'),
        ],
    )
    async def test_badly_signed_handshake_gets_401_and_no_answer(
        self, providers: Client, r: redis.Redis, name: str, body: bytes
    ) -> None:
        """A handshake whose signature fails is a 401 whose body answers nothing."""
        headers = signed_headers(case_named(name), body)
        if name == "twitch":
            headers["Twitch-Eventsub-Message-Type"] = "webhook_callback_verification"
        resp = await providers.post(f"/hooks/{name}", data=body + b" ", headers=headers)
        assert resp.status == 401
        answer = await resp.read()
        assert b"pogchamp" not in answer and b'"type":1' not in answer
        assert b"encryptedToken" not in answer and b"challenge" not in answer
        assert queued_envelopes(r, "providers") == []


class TestMailgunTokens:
    """Mailgun tokens are accepted once; an uncommitted one can be used again."""

    async def test_replayed_token_with_another_body_is_refused(
        self, providers: Client, r: redis.Redis
    ) -> None:
        """The same signature object on a new event is refused as a replay."""
        first = request_for(providers, case_named("mailgun"))
        assert (await post(providers, first)).status == 202
        payload = orjson.loads(first.body)
        payload["event-data"]["id"] = "forged"
        resp = await post(providers, first, body=orjson.dumps(payload))
        assert resp.status == 401 and (await resp.json())["error"] == "replay"
        assert [e.id for e in queued_envelopes(r, "providers")] == [first.event_id]
        assert r.ttl(keys.used_token("mailgun", payload["signature"]["token"])) > 600

    async def test_token_is_released_when_the_event_is_not_committed(
        self, redis_url: str, client_for: Any, r: redis.Redis
    ) -> None:
        """Refused for backpressure (503), the same request succeeds once there is room."""
        table = {**source_table(case_named("mailgun")), "max_queue_depth": 1}
        settings = provider_settings(redis_url, full=table)
        client: Client = await client_for(settings, redis_url)
        r.rpush(keys.rq_queue("providers"), "a-job")
        request = build_request(
            settings, "full", url=f"http://{client.host}:{client.port}/hooks/full"
        )
        assert (await post(client, request)).status == 503
        r.delete(keys.rq_queue("providers"))
        assert (await post(client, request)).status == 202


class TestKeyConfiguration:
    """Keys are checked at start-up, and errors name the key path."""

    def prepare(self, **table: Any) -> None:
        """Prepare one source ``s`` configured by ``table``."""
        settings = parse_settings({"sources": {"s": table}}, {})
        prepare_source(settings.sources["s"])

    @pytest.mark.parametrize(
        ("table", "message"),
        [
            (
                {"scheme": "sendgrid", "public_keys": ["not base64!"]},
                r"sources\.s\.public_keys\[0\]: public key is not valid base64",
            ),
            (
                {"scheme": "sendgrid", "public_keys": ["AAAA"]},
                r"public_keys\[0\]: public key is not a DER",
            ),
            (
                {"scheme": "discord", "public_keys": ["abcd"]},
                r"public_keys\[0\]: public key is 2 bytes",
            ),
            (
                {
                    "scheme": "standard-webhooks",
                    "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                    "public_keys": ["whpk_AAAA"],
                },
                r"public_keys\[0\]",
            ),
            (
                {"scheme": "sendgrid", "secrets": ["s"]},
                r"secrets\[0\]: the sendgrid scheme takes no secrets",
            ),
            (
                {"scheme": "github", "public_keys": ["abc"]},
                r"public_keys\[0\]: the github scheme takes no public keys",
            ),
            (
                {"scheme": "twilio", "secrets": ["t"]},
                r"sources\.s\.public_url: required for scheme 'twilio'",
            ),
        ],
    )
    def test_unusable_keys_are_start_up_errors(self, table: dict[str, Any], message: str) -> None:
        """A malformed or misplaced key stops the start-up with its path in the message."""
        with pytest.raises(ConfigError, match=message):
            self.prepare(**table)

    def test_configuration_knows_every_scheme_name(self) -> None:
        """The configuration accepts exactly the schemes the registry has."""
        assert sorted(SCHEMES) == sorted(SCHEME_NAMES)

    def test_example_sources_all_build(self) -> None:
        """Every source of config/example.toml, the SendGrid key and Twilio URL included,
        builds at start-up."""
        settings = load_settings(EXAMPLE, EXAMPLE_ENV)
        for source in settings.sources.values():
            prepare_source(source)

    @pytest.mark.parametrize(
        ("table", "message"),
        [
            ({"scheme": "discord"}, r"sources\.s\.secrets: missing; .*or public_keys"),
            ({"scheme": "discord", "public_keys": []}, r"sources\.s\.public_keys: empty"),
            ({"scheme": "twilio", "secrets": ["t"], "public_url": "hooks.example.com"}, "URL"),
            (
                {"scheme": "twilio", "secrets": ["t"], "public_url": "https://h/hooks/t?a=1"},
                r"sources\.s\.public_url: leave out the query string",
            ),
        ],
    )
    def test_file_errors_name_the_key(self, table: dict[str, Any], message: str) -> None:
        """Keys missing or malformed in the file are reported with their path."""
        with pytest.raises(ConfigError, match=message):
            parse_settings({"sources": {"s": table}}, {})


class TestReplayWindows:
    """A scheme's documented window applies unless the configuration sets one."""

    @pytest.mark.parametrize(
        ("table", "receiver", "expected"),
        [
            ({"scheme": "twitch", "secrets": ["s"]}, {}, 600),
            ({"scheme": "linear", "secrets": ["s"]}, {}, 60),
            ({"scheme": "stripe", "secrets": ["s"]}, {}, 300),
            ({"scheme": "twitch", "secrets": ["s"], "tolerance": "1m"}, {}, 60),
            ({"scheme": "twitch", "secrets": ["s"]}, {"tolerance": "2m"}, 120),
        ],
    )
    def test_tolerance(
        self, table: dict[str, Any], receiver: dict[str, Any], expected: float
    ) -> None:
        """The source's or [receiver]'s tolerance wins; else the scheme's; else 5 min."""
        settings = parse_settings({"receiver": receiver, "sources": {"s": table}}, {})
        assert prepare_source(settings.sources["s"]).tolerance == expected

    async def test_twitch_message_eight_minutes_old_is_accepted(
        self, providers: Client, r: redis.Redis
    ) -> None:
        """Twitch's 10-minute window, not the 5-minute default, decides."""
        case = case_named("twitch")
        body = b'{"subscription":{"type":"channel.follow"},"event":{}}'
        for age, status in ((8 * 60, 202), (11 * 60, 401)):
            headers = signed_headers(case, body, timestamp=_now() - age)
            headers["Twitch-Eventsub-Subscription-Type"] = "channel.follow"
            resp = await providers.post("/hooks/twitch", data=body, headers=headers)
            assert resp.status == status, await resp.text()
