"""The receiver's promises, over real HTTP against a real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from hookline import keys
from hookline.connection import EmbeddedRedis
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
        assert r.exists(keys.seen("stripe", "evt_1"))

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
        """The dedupe marker lives for Stripe's three-day retry window."""
        await post_stripe(client, stripe_event("evt_ttl"))
        ttl = r.pttl(keys.seen("stripe", "evt_ttl"))
        assert 3 * 86400_000 - 60_000 < ttl <= 3 * 86400_000

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
        assert not r.exists(keys.seen("stripe", "evt_b"))
        r.delete(keys.rq_queue("hookline"))
        assert (await post_stripe(client, stripe_event("evt_b"))).status == 202


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
        assert job.func_name == "workers.jobs.process"
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


class TestReplicaWait:
    async def test_ack_waits_for_a_replica_when_configured(
        self, private_redis: EmbeddedRedis, client_for: Any
    ) -> None:
        """With wait_replicas = 1: no replica means 503 (event kept); with one, 202."""
        settings = make_settings(server={"wait_replicas": 1, "wait_timeout": 0.2})
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
            assert (await post_stripe(client, stripe_event("evt_rep2"))).status == 202
            assert (await post_stripe(client, stripe_event("evt_rep"))).status == 200
            replica_client.close()
        primary.close()
