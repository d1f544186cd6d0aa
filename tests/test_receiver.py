"""The receiver's promises, over real HTTP against a real Redis."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp
import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from hookline.config.defaults import DEFAULT_DEDUPE_WINDOW
from hookline.envelope import Envelope
from hookline.ingest.app import METRICS
from hookline.logs import JsonLines, LoopBatchedStream
from hookline.redis import keys
from hookline.redis.commit import Enqueuer, Outcome, Pending
from hookline.redis.connection import as_str
from hookline.redis.embedded import EmbeddedRedis
from hookline.redis.marks import BUCKETS_PER_WINDOW, MarkState, mark_state
from tests.conftest import (
    GITHUB_SECRET,
    SHOPIFY_SECRET,
    SLACK_SECRET,
    STRIPE_SECRET,
    SW_SECRET,
    make_settings,
)
from tests.helpers import queued_envelopes, signed, stripe_event

Client = TestClient[Any, Any]


async def post_stripe(client: Client, body: bytes, secret: str = STRIPE_SECRET, **kw: Any) -> Any:
    return await client.post(
        "/hooks/stripe", data=body, headers=signed("stripe", secret, body, **kw)
    )


async def raw_post(
    client: Client, path: str, headers: dict[str, str | bytes], body: bytes
) -> tuple[int, bytes]:
    """POST with header values sent as given bytes (aiohttp's client only sends UTF-8);
    return the status and the body of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = [f"POST {path} HTTP/1.1", "Host: hookline", "Connection: close"]
    head.append(f"Content-Length: {len(body)}")
    wire = b"\r\n".join(line.encode() for line in head) + b"\r\n"
    for name, value in headers.items():
        wire += name.encode() + b": " + (value.encode() if isinstance(value, str) else value)
        wire += b"\r\n"
    writer.write(wire + b"\r\n" + body)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), payload


def github_headers(
    body: bytes, delivery: str | bytes, event: str | bytes
) -> dict[str, str | bytes]:
    """GitHub's signed headers for ``body``, with the (unsigned) delivery id and event type."""
    headers: dict[str, str | bytes] = {**signed("github", GITHUB_SECRET, body)}
    headers.update({"X-GitHub-Delivery": delivery, "X-GitHub-Event": event})
    return headers


def hold_redis(url: str, seconds: float) -> None:
    """Keep the Redis server at ``url`` busy (one long script) for ``seconds``."""
    client = redis.Redis.from_url(url)
    client.eval(
        "local t = redis.call('TIME') local stop = t[1] * 1e6 + t[2] + tonumber(ARGV[1]) "
        "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= stop return 1",
        0,
        int(seconds * 1e6),
    )
    client.close()


class TestAccept:
    async def test_stripe_event_is_acknowledged_once_in_redis(
        self, client: Client, r: redis.Redis
    ) -> None:
        """A valid Stripe event gets 202 with its id, and its envelope is in an RQ job."""
        body = stripe_event("evt_1")
        resp = await post_stripe(client, body)
        assert resp.status == 202
        assert await resp.json() == {"id": "evt_1"}
        [env] = queued_envelopes(r)
        assert (env.source, env.id, env.type, env.body) == ("stripe", "evt_1", "invoice.paid", body)
        assert "stripe-signature" in env.headers
        assert mark_state(r, "stripe", "evt_1", DEFAULT_DEDUPE_WINDOW) == MarkState.SEEN

    @pytest.mark.parametrize(
        ("source", "scheme", "secret", "queue"),
        [
            ("sw", "standard-webhooks", SW_SECRET, "hookline"),
            ("svix", "svix", SW_SECRET, "hookline"),
            ("github", "github", GITHUB_SECRET, "hookline"),
            ("shopify", "shopify", SHOPIFY_SECRET, "hookline"),
        ],
    )
    async def test_every_scheme_is_accepted_with_its_default_id_and_type(
        self, client: Client, r: redis.Redis, source: str, scheme: str, secret: str, queue: str
    ) -> None:
        """Each scheme's signed request is accepted and its id and type read from the defaults."""
        body = b'{"type": "order.created", "n": 1}'
        headers = signed(scheme, secret, body, msg_id="msg_42")
        headers.update({"X-GitHub-Event": "order.created", "X-Shopify-Topic": "order.created"})
        resp = await client.post(f"/hooks/{source}", data=body, headers=headers)
        assert resp.status == 202, await resp.text()
        [env] = queued_envelopes(r, queue)
        assert (env.source, env.id, env.type) == (source, "msg_42", "order.created")

    async def test_slack_event_reads_nested_type(self, client: Client, r: redis.Redis) -> None:
        """A Slack Events API callback is keyed by event_id and typed by event.type."""
        body = b'{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}'
        resp = await client.post(
            "/hooks/slack", data=body, headers=signed("slack", SLACK_SECRET, body)
        )
        assert resp.status == 202
        [env] = queued_envelopes(r)
        assert (env.id, env.type) == ("Ev1", "app_mention")

    async def test_generic_hmac_goes_to_its_own_queue(self, client: Client, r: redis.Redis) -> None:
        """A generic HMAC source with base64 and a prefix lands in its configured queue."""
        body = b'{"id":"g1","type":"thing.happened"}'
        headers = signed(
            "hmac",
            "generic-secret",
            body,
            header="X-Signature",
            prefix="sha256=",
            encoding="base64",
        )
        resp = await client.post("/hooks/generic", data=body, headers=headers)
        assert resp.status == 202
        assert [e.id for e in queued_envelopes(r, "generic")] == ["g1"]
        assert queued_envelopes(r, "hookline") == []

    async def test_non_utf8_body_is_kept_byte_exact(self, client: Client, r: redis.Redis) -> None:
        """A body that is not UTF-8 verifies and is stored byte for byte."""
        body = b"\xff\xfe binary"
        headers = signed("github", GITHUB_SECRET, body, msg_id="d-1")
        headers["X-GitHub-Event"] = "push"
        assert (await client.post("/hooks/github", data=body, headers=headers)).status == 202
        assert queued_envelopes(r)[0].body == body

    async def test_rotation_accepts_any_listed_secret(
        self, redis_url: str, client_for: Any, r: redis.Redis
    ) -> None:
        """With two secrets configured, a request signed with either is accepted."""
        settings = make_settings(
            sources={"stripe": {"scheme": "stripe", "secrets": ["whsec_new", STRIPE_SECRET]}}
        )
        client = await client_for(settings, redis_url)
        assert (await post_stripe(client, stripe_event(), secret=STRIPE_SECRET)).status == 202
        assert (await post_stripe(client, stripe_event(), secret="whsec_new")).status == 202
        assert (await post_stripe(client, stripe_event(), secret="whsec_old")).status == 401
        assert len(queued_envelopes(r)) == 2


class TestDuplicates:
    async def test_redelivery_is_answered_200_and_not_enqueued_again(
        self, client: Client, r: redis.Redis
    ) -> None:
        """The same event id twice: 202 then 200 duplicate, one envelope in Redis."""
        body = stripe_event("evt_dup")
        assert (await post_stripe(client, body)).status == 202
        resp = await post_stripe(client, body)
        assert resp.status == 200
        assert await resp.json() == {"id": "evt_dup", "duplicate": True}
        assert [e.id for e in queued_envelopes(r)] == ["evt_dup"]

    async def test_dedupe_window_defaults_to_three_days(
        self, client: Client, r: redis.Redis
    ) -> None:
        """The dedupe mark lives for Stripe's three-day retry window, and at most one
        bucket (half of it) longer."""
        await post_stripe(client, stripe_event("evt_ttl"))
        [bucket] = list(r.scan_iter(match=keys.marks("stripe") + ":*"))
        window = 3 * 86400_000
        assert window - 60_000 < r.pttl(bucket) <= window * (1 + 1 / BUCKETS_PER_WINDOW)

    async def test_same_id_in_other_source_is_not_a_duplicate(
        self, client: Client, r: redis.Redis
    ) -> None:
        """Dedupe is per source: the same id from two sources is two events."""
        body = b'{"id":"same","type":"t"}'
        headers = signed(
            "hmac",
            "generic-secret",
            body,
            header="X-Signature",
            prefix="sha256=",
            encoding="base64",
        )
        assert (await client.post("/hooks/generic", data=body, headers=headers)).status == 202
        assert (await post_stripe(client, body)).status == 202

    async def test_concurrent_duplicates_enqueue_once(self, client: Client, r: redis.Redis) -> None:
        """Twenty concurrent deliveries of one event yield one 202, nineteen 200s, one envelope."""

        body = stripe_event("evt_race")
        responses = await asyncio.gather(*(post_stripe(client, body) for _ in range(20)))
        statuses = sorted(resp.status for resp in responses)
        assert statuses == [200] * 19 + [202]
        assert len(queued_envelopes(r)) == 1


class TestRejections:
    async def test_tampered_body_gets_401_and_nothing_enqueued(
        self, client: Client, r: redis.Redis
    ) -> None:
        """A body changed after signing is refused with 401 and nothing is written."""
        body = stripe_event("evt_t")
        headers = signed("stripe", STRIPE_SECRET, body)
        resp = await client.post(
            "/hooks/stripe", data=body.replace(b"4200", b"4201"), headers=headers
        )
        assert resp.status == 401
        assert (await resp.json())["error"] == "signature"
        assert r.dbsize() == 0

    async def test_missing_signature_gets_401(self, client: Client, r: redis.Redis) -> None:
        """A request without a signature header is refused with 401."""
        resp = await client.post("/hooks/stripe", data=stripe_event())
        assert resp.status == 401
        assert r.dbsize() == 0

    @pytest.mark.parametrize("skew", [-301, 301, -3600])
    async def test_timestamp_outside_tolerance_gets_401(
        self, client: Client, r: redis.Redis, skew: int
    ) -> None:
        """A timestamp more than five minutes in the past or future is refused."""
        resp = await post_stripe(client, stripe_event(), timestamp=int(time.time()) + skew)
        assert resp.status == 401
        assert (await resp.json())["error"] == "timestamp"
        assert r.dbsize() == 0

    async def test_unknown_source_gets_404(self, client: Client, r: redis.Redis) -> None:
        """A POST to a source that is not configured is answered 404."""
        assert (await client.post("/hooks/nope", data=b"{}")).status == 404
        assert r.dbsize() == 0

    async def test_wrong_method_gets_405(self, client: Client) -> None:
        """GET on a hook URL is answered 405."""
        assert (await client.get("/hooks/stripe")).status == 405

    async def test_oversized_body_gets_413(
        self, redis_url: str, client_for: Any, r: redis.Redis
    ) -> None:
        """A body over the source's limit is refused with 413, with or without Content-Length."""
        settings = make_settings(
            sources={"stripe": {"scheme": "stripe", "secrets": [STRIPE_SECRET], "max_body": 1000}}
        )
        client = await client_for(settings, redis_url)
        body = stripe_event(size=5000)
        assert (await post_stripe(client, body)).status == 413

        async def trickle() -> Any:
            for start in range(0, len(body), 512):
                yield body[start : start + 512]

        resp = await client.post(
            "/hooks/stripe", data=trickle(), headers=signed("stripe", STRIPE_SECRET, body)
        )
        assert resp.status == 413
        assert r.dbsize() == 0

    async def test_unreadable_id_gets_400(self, client: Client, r: redis.Redis) -> None:
        """A verified body without an event id is refused with 400 and not enqueued."""
        for body in (b'{"type":"x"}', b"not json at all", b'{"id": {"nested": 1}, "type": "x"}'):
            resp = await post_stripe(client, body)
            assert resp.status == 400, body
            assert (await resp.json())["error"] == "unreadable-event"
        assert r.dbsize() == 0

    async def test_id_with_control_characters_gets_400(
        self, client: Client, r: redis.Redis
    ) -> None:
        """An event id or type holding control characters is unreadable: 400, nothing written."""
        for body in (b'{"id":"evt_\\u0001x","type":"x"}', b'{"id":"evt_1","type":"a\\u0000b"}'):
            resp = await post_stripe(client, body)
            assert resp.status == 400, body
            assert (await resp.json())["error"] == "unreadable-event"
        assert r.dbsize() == 0

    async def test_body_behind_a_byte_order_mark_gets_400(
        self, client: Client, r: redis.Redis
    ) -> None:
        """A JSON body behind a UTF-8 byte order mark is refused, as workers could not parse
        it (simdjson would skip the mark; the receiver must not)."""
        resp = await post_stripe(client, b"\xef\xbb\xbf" + stripe_event("evt_bom"))
        assert resp.status == 400
        assert r.dbsize() == 0

    async def test_errors_and_logs_never_contain_secrets_or_bodies(self, client: Client) -> None:
        """Neither an error body nor a log line repeats the secret or the request body."""
        body = b'{"id":"evt_secretive","type":"x","card":"4242424242424242"}'
        with capture_logs() as logs:
            bad = await post_stripe(client, body, secret="whsec_wrong_guess")
            good = await post_stripe(client, body)
        text = (await bad.text()) + (await good.text()) + repr(logs)
        for needle in (STRIPE_SECRET, "whsec_wrong_guess", "4242424242424242"):
            assert needle not in text
        assert [entry["status"] for entry in logs] == [401, 202]
        assert logs[1]["event_id"] == "evt_secretive"
        assert "latency_ms" in logs[1]


class TestExtraction:
    async def test_numbers_wider_than_64_bits_elsewhere_do_not_hide_the_id(
        self, client: Client, r: redis.Redis
    ) -> None:
        """A body simdjson refuses (an integer past 64 bits) is read the slower way."""
        body = b'{"id":"evt_wide","type":"x","amount":123456789012345678901234567890}'
        resp = await post_stripe(client, body)
        assert (resp.status, await resp.json()) == (202, {"id": "evt_wide"})
        [env] = queued_envelopes(r)
        assert (env.id, env.body) == ("evt_wide", body)

    async def test_nested_and_numeric_ids_are_read(self, client: Client, r: redis.Redis) -> None:
        """Paths walk nested objects; an integer id is read as its digits, a bool is not."""
        body = b'{"id": 12345, "type": "x", "data": {"object": {"id": true}}}'
        assert (await (await post_stripe(client, body)).json()) == {"id": "12345"}
        resp = await post_stripe(client, b'{"id": true, "type": "x"}')
        assert resp.status == 400

    async def test_non_ascii_body_is_stored_byte_exact(
        self, client: Client, r: redis.Redis
    ) -> None:
        """A UTF-8 body that is not ASCII is stored as base64 and read back byte for byte."""
        body = stripe_event("evt_euro").replace(
            b'"object"', '"description":"1 \u00d7 42 \u20ac","object"'.encode()
        )
        assert (await post_stripe(client, body)).status == 202
        [env] = queued_envelopes(r)
        assert env.body == body
        [job_id] = r.lrange("rq:queue:hookline", 0, -1)
        stored = orjson.loads(r.hget(keys.rq_job(as_str(job_id)), "data") or b"")
        assert stored[2][0][0]["encoding"] == "base64"


class TestUndecodableHeaders:
    async def test_bytes_not_utf8_fail_only_their_own_request(
        self, redis_url: str, client_for: Any, r: redis.Redis
    ) -> None:
        """Header bytes that are not UTF-8 in an event id or type get 400, in another kept
        header are stored escaped (202), and never fail an event committed in the same batch."""
        log = io.BytesIO()
        client = await client_for(
            make_settings(server={"commit_delay": "300ms"}),  # the four share one batch
            redis_url,
            access_log=JsonLines(LoopBatchedStream(log)),
        )
        body = b'{"action": "opened"}'
        good = stripe_event("evt_good")
        ua = {**github_headers(body, "d-ua", "issues"), "User-Agent": b"GitHub-Hookshot/\xff1"}
        answers = await asyncio.gather(
            raw_post(client, "/hooks/stripe", {**signed("stripe", STRIPE_SECRET, good)}, good),
            raw_post(client, "/hooks/github", github_headers(body, b"abc\xff", "issues"), body),
            raw_post(client, "/hooks/github", github_headers(body, "d-type", b"push\xff"), body),
            raw_post(client, "/hooks/github", ua, body),
        )
        assert [status for status, _ in answers] == [202, 400, 400, 202]
        for _, payload in answers[1:3]:
            assert orjson.loads(payload)["error"] == "unreadable-event"
        assert r.llen(keys.rq_queue("hookline")) == 1, "the good events share one job"
        stored = {env.id: env for env in queued_envelopes(r)}
        assert sorted(stored) == ["d-ua", "evt_good"]
        assert stored["d-ua"].headers["user-agent"] == "GitHub-Hookshot/\\xff1"
        lines = [orjson.loads(line) for line in log.getvalue().splitlines()]
        assert sorted(line["status"] for line in lines) == [202, 202, 400, 400]

    def test_access_log_lines_never_fail(self) -> None:
        """A JSON access line with surrogates, a huge integer or an odd object is still written."""
        log = io.BytesIO()
        JsonLines(LoopBatchedStream(log))(
            "info", {"event": "webhook", "source": "a\udcffb", "n": 2**70, "x": object()}
        )
        [line] = [orjson.loads(raw) for raw in log.getvalue().splitlines()]
        assert (line["source"], line["n"], line["event"]) == ("a\\xffb", str(2**70), "webhook")

    def test_unstorable_envelope_is_refused_before_it_joins_a_batch(self) -> None:
        """An envelope that cannot be stored as JSON fails when handed over for commit,
        so it can never fail the other events of a batch."""
        env = Envelope("github", "abc\udcff", "push", time.time(), {}, b"{}", "hookline")
        with pytest.raises(TypeError):
            Pending(env, 60.0)


class TestSlackChallenge:
    async def test_url_verification_is_echoed_not_enqueued(
        self, client: Client, r: redis.Redis
    ) -> None:
        """Slack's signed url_verification challenge is answered with the challenge."""
        body = b'{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV","token":"x"}'
        resp = await client.post(
            "/hooks/slack", data=body, headers=signed("slack", SLACK_SECRET, body)
        )
        assert resp.status == 200
        assert (await resp.json())["challenge"].startswith("3eZbrw1a")
        assert r.dbsize() == 0


class TestBackpressure:
    async def test_full_queue_gets_503_with_retry_after(
        self, redis_url: str, client_for: Any, r: redis.Redis
    ) -> None:
        """Past max_queue_depth the receiver answers 503 with Retry-After and keeps no marker."""
        settings = make_settings(
            sources={
                "stripe": {"scheme": "stripe", "secrets": [STRIPE_SECRET], "max_queue_depth": 1}
            }
        )
        client = await client_for(settings, redis_url)
        assert (await post_stripe(client, stripe_event("evt_a"))).status == 202
        resp = await post_stripe(client, stripe_event("evt_b"))
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert mark_state(r, "stripe", "evt_b", DEFAULT_DEDUPE_WINDOW) == MarkState.UNSEEN
        r.delete(keys.rq_queue("hookline"))
        assert (await post_stripe(client, stripe_event("evt_b"))).status == 202


class TestBodyBudget:
    async def test_bodies_held_at_once_are_bounded_by_max_buffered(
        self, redis_url: str, client_for: Any, r: redis.Redis
    ) -> None:
        """A body that would take the bodies held past server.max_buffered gets 503 with
        Retry-After, declared or chunked; once the others are answered it is accepted."""
        settings = make_settings(
            server={"max_buffered": 3000},
            sources={"stripe": {"scheme": "stripe", "secrets": [STRIPE_SECRET], "max_body": 2000}},
        )
        client = await client_for(settings, redis_url)
        registry = client.server.app[METRICS].registry

        def held() -> float:
            return registry.get_sample_value("hookline_http_buffered_bytes") or 0.0

        slow_body, release = stripe_event("evt_slow", size=1900), asyncio.Event()

        async def slow_chunks() -> Any:
            yield slow_body[:1500]
            await release.wait()
            yield slow_body[1500:]

        slow = asyncio.create_task(
            client.post(
                "/hooks/stripe",
                data=slow_chunks(),
                headers=signed("stripe", STRIPE_SECRET, slow_body),
            )
        )
        deadline = time.monotonic() + 5
        while held() < 1500:
            assert time.monotonic() < deadline, "the first chunk never arrived"
            await asyncio.sleep(0.01)

        declared = stripe_event("evt_declared", size=1800)
        resp = await post_stripe(client, declared)
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"

        chunked = stripe_event("evt_chunked", size=1800)

        async def chunks() -> Any:
            for start in range(0, len(chunked), 600):
                yield chunked[start : start + 600]

        resp = await client.post(
            "/hooks/stripe", data=chunks(), headers=signed("stripe", STRIPE_SECRET, chunked)
        )
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"

        release.set()
        assert (await slow).status == 202
        assert held() == 0
        assert (await post_stripe(client, declared)).status == 202
        assert (await post_stripe(client, chunked)).status == 202
        assert held() == 0
        assert sorted(e.id for e in queued_envelopes(r)) == [
            "evt_chunked",
            "evt_declared",
            "evt_slow",
        ]


class TestRedisFailure:
    async def test_redis_down_gets_503_then_recovers(
        self, private_redis: EmbeddedRedis, client_for: Any
    ) -> None:
        """With Redis down: 503 + Retry-After and readyz 503; once back, events are accepted."""
        client = await client_for(make_settings(), private_redis.url)
        assert (await client.get("/readyz")).status == 200
        private_redis.stop(kill=True)
        resp = await post_stripe(client, stripe_event("evt_down"))
        assert resp.status == 503
        assert "Retry-After" in resp.headers
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        private_redis.start()
        resp = await post_stripe(client, stripe_event("evt_down"))
        assert resp.status == 202
        assert (await client.get("/readyz")).status == 200
        check = redis.Redis.from_url(private_redis.url)
        assert [e.id for e in queued_envelopes(check)] == ["evt_down"]
        check.close()

    async def test_failure_mid_commit_leaves_nothing_half_written(
        self, client: Client, r: redis.Redis
    ) -> None:
        """When the queue cannot take the job, neither a job nor a dedupe marker is written."""
        r.set(keys.rq_queue("hookline"), "not a list")
        resp = await post_stripe(client, stripe_event("evt_mid"))
        assert resp.status == 503
        assert sorted(r.keys("*")) == [keys.rq_queue("hookline").encode()]
        r.delete(keys.rq_queue("hookline"))
        assert (await post_stripe(client, stripe_event("evt_mid"))).status == 202


class TestQueueFormat:
    async def test_jobs_are_real_rq_jobs_with_json_data(
        self, client: Client, r: redis.Redis
    ) -> None:
        """RQ itself reads the job: its function, queue and the envelope argument."""
        from rq import Queue
        from rq.job import Job

        body = stripe_event("evt_rq")
        assert (await post_stripe(client, body)).status == 202
        queue = Queue("hookline", connection=r, serializer="json")
        assert queue.count == 1
        assert b"rq:queue:hookline" in r.smembers("rq:queues")
        job = Job.fetch(queue.job_ids[0], connection=r, serializer="json")
        assert job.func_name == "hookline.workers.jobs.process"
        assert job.origin == "hookline"
        [envelope] = job.args[0]
        assert envelope["id"] == "evt_rq"
        assert envelope["body"].encode() == body
        assert b"pickle" not in (r.hget(f"rq:job:{job.id}", "data") or b"")
        orjson.loads(r.hget(f"rq:job:{job.id}", "data") or b"")


class TestHealth:
    async def test_healthz_and_readyz_answer(self, client: Client) -> None:
        """Liveness and readiness both answer 200 while Redis is reachable."""
        assert (await client.get("/healthz")).status == 200
        assert (await (await client.get("/readyz")).json()) == {"status": "ready"}

    async def test_readyz_burst_does_not_starve_commits(
        self, client: Client, redis_url: str, r: redis.Redis
    ) -> None:
        """500 concurrent /readyz while Redis is slow leave it connections to commit with:
        an event sent meanwhile gets 202, and every probe says ready."""
        busy = asyncio.create_task(asyncio.to_thread(hold_redis, redis_url, 1.0))
        await asyncio.sleep(0.1)  # the script is running: Redis answers nothing until it ends
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as probes:

            async def probe() -> int:
                async with probes.get(client.make_url("/readyz")) as resp:
                    return resp.status

            burst = [asyncio.create_task(probe()) for _ in range(500)]
            await asyncio.sleep(0.3)  # the probes are waiting on Redis
            resp = await post_stripe(client, stripe_event("evt_during_burst"))
            statuses = await asyncio.gather(*burst)
        await busy
        assert resp.status == 202
        assert set(statuses) == {200}
        assert [e.id for e in queued_envelopes(r)] == ["evt_during_burst"]


class TestQueueDepthPerSource:
    def test_each_event_is_held_to_its_own_sources_depth_limit(self, r: redis.Redis) -> None:
        """Events for one queue committed together from sources with different
        max_queue_depth are each refused or accepted by their own limit, answered in order."""

        def pending(source: str, event_id: str, max_depth: int) -> Pending:
            env = Envelope(source, event_id, "t", time.time(), {}, b"{}", "hookline")
            return Pending(env, 60.0, max_depth)

        enqueuer = Enqueuer(r)
        assert enqueuer.commit([pending("big", "b0", 0)]) == [Outcome.ENQUEUED]  # depth 1
        batch = [
            pending("big", "b1", 100),
            pending("small", "s1", 1),
            pending("big", "b2", 100),
            pending("small", "s2", 1),
        ]
        outcomes = enqueuer.commit(batch)
        assert outcomes == [Outcome.ENQUEUED, Outcome.QUEUE_FULL] * 2
        assert sorted(e.id for e in queued_envelopes(r)) == ["b0", "b1", "b2"]
        assert mark_state(r, "small", "s1", DEFAULT_DEDUPE_WINDOW) == MarkState.UNSEEN


class TestReplicaWait:
    async def test_ack_waits_for_a_replica_when_configured(
        self, private_redis: EmbeddedRedis, client_for: Any
    ) -> None:
        """With wait_replicas = 1: no replica means 503 (event kept); with one, 202."""
        settings = make_settings(server={"wait_replicas": 1, "wait_timeout": 1.0})
        client = await client_for(settings, private_redis.url)
        resp = await post_stripe(client, stripe_event("evt_rep"))
        assert resp.status == 503
        primary = redis.Redis.from_url(private_redis.url)
        assert [e.id for e in queued_envelopes(primary)] == ["evt_rep"], "kept, not acked"
        primary.config_set("repl-diskless-sync-delay", 0)  # sync the replica at once
        with EmbeddedRedis(extra=("--replicaof", "127.0.0.1", str(private_redis.port))) as replica:
            replica_client = redis.Redis.from_url(replica.url)
            deadline = time.monotonic() + 10
            while replica_client.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "replica did not sync"
                await asyncio.sleep(0.05)
            # A freshly synced replica may miss its first WAIT (seen here: 4 in 6 times out
            # at 200 ms, the later ones answered at once): prime the link before measuring.
            primary.set("prime", 1)
            assert await asyncio.to_thread(primary.wait, 1, 10_000) == 1
            assert (await post_stripe(client, stripe_event("evt_rep2"))).status == 202
            assert (await post_stripe(client, stripe_event("evt_rep"))).status == 200
            replica_client.close()
        primary.close()
