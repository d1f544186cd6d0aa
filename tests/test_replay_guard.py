"""The replay guard: a captured delivery re-sent under fresh unsigned ids is one event."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest

from hookline.config.settings import parse_settings
from hookline.errors import ConfigError
from hookline.ingest.app import METRICS
from hookline.ingest.extract import locators
from hookline.ingest.schemes import SCHEME_NAMES, get_scheme
from hookline.ingest.sources import replay_guard_default
from hookline.redis import keys
from hookline.redis.commit import Enqueuer, Outcome, Pending
from hookline.redis.marks import MarkState, count_states, mark_state, replay_state
from tests.conftest import GITHUB_SECRET, SHOPIFY_SECRET, SOURCES, ClientFactory, make_settings
from tests.helpers import queued_envelopes, signed
from tests.worker_support import envelope

Client = TestClient[Any, Any]

#: The schemes whose event id is not covered by their signature (README says so).
GUARDED_BY_DEFAULT = {"github", "shopify", "twilio", "zoom", "linear", "bitbucket", "woocommerce"}


def _github(body: bytes, delivery: str) -> dict[str, str]:
    headers = signed("github", GITHUB_SECRET, body)
    headers.update({"X-GitHub-Delivery": delivery, "X-GitHub-Event": "push"})
    return headers


def _settings(redis_url: str, **github: Any) -> Any:
    sources = {**SOURCES, "github": {**SOURCES["github"], **github}}
    return make_settings(redis_url, sources=sources)


class TestReplayGuard:
    async def test_a_delivery_resent_under_new_ids_is_one_event(
        self, redis_url: str, client_for: ClientFactory, r: redis.Redis
    ) -> None:
        """One GitHub delivery, then the same signed body under three new delivery ids:
        202 once, then 200 duplicates marked as replays, one job, three counted."""
        client = await client_for(_settings(redis_url), redis_url)
        body = b'{"ref": "refs/heads/main", "after": "3f2a"}'
        first = await client.post("/hooks/github", data=body, headers=_github(body, "d-1"))
        assert first.status == 202
        for n in range(2, 5):
            resp = await client.post("/hooks/github", data=body, headers=_github(body, f"d-{n}"))
            assert resp.status == 200
            assert await resp.json() == {"id": f"d-{n}", "duplicate": True, "replay": True}
        assert [e.id for e in queued_envelopes(r)] == ["d-1"]
        text = generate_latest(client.app[METRICS].registry).decode()
        assert 'hookline_replays_total{source="github"} 3.0' in text

    async def test_the_mark_lives_as_long_as_the_events(
        self, redis_url: str, client_for: ClientFactory, r: redis.Redis
    ) -> None:
        """The replay mark is written with the job and the event's own mark, in the same
        bucket (so kept as long); a different body is a new event."""
        client = await client_for(_settings(redis_url, dedupe_window=120), redis_url)
        body = b'{"n": 1}'
        assert (
            await client.post("/hooks/github", data=body, headers=_github(body, "a"))
        ).status == 202
        fingerprint = hashlib.sha256(body).digest()
        assert replay_state(r, "github", fingerprint, 120) == MarkState.SEEN
        assert mark_state(r, "github", "a", 120) == MarkState.SEEN
        [bucket] = list(r.scan_iter(match=keys.marks("github") + ":*"))
        assert r.hlen(bucket) == 2
        other = b'{"n": 2}'
        assert (
            await client.post("/hooks/github", data=other, headers=_github(other, "b"))
        ).status == 202

    async def test_shopify_is_guarded_by_default(
        self, redis_url: str, client_for: ClientFactory, r: redis.Redis
    ) -> None:
        """Shopify's event id is an unsigned header: a replay under a new id is refused."""
        client = await client_for(make_settings(redis_url), redis_url)
        body = b'{"id": 820982911946154508, "updated_at": "2024-05-01T10:00:00Z"}'
        statuses = []
        for n in range(3):
            headers = signed("shopify", SHOPIFY_SECRET, body, msg_id=f"shop-{n}")
            headers["X-Shopify-Topic"] = "orders/create"
            statuses.append(
                (await client.post("/hooks/shopify", data=body, headers=headers)).status
            )
        assert statuses == [202, 200, 200]
        assert len(queued_envelopes(r)) == 1

    async def test_guard_off_accepts_byte_identical_events_under_new_ids(
        self, redis_url: str, client_for: ClientFactory, r: redis.Redis
    ) -> None:
        """With replay_guard = false (the trade-off the other way), the same body under
        three ids is three events."""
        client = await client_for(_settings(redis_url, replay_guard=False), redis_url)
        body = b'{"zen": "Keep it logically awesome."}'
        for n in range(3):
            resp = await client.post("/hooks/github", data=body, headers=_github(body, f"p-{n}"))
            assert resp.status == 202
        assert len(queued_envelopes(r)) == 3
        assert count_states(r, "github") == {MarkState.SEEN: 3, MarkState.DONE: 0}

    def test_defaults_over_every_registered_scheme(self) -> None:
        """Unset, the guard is on exactly where the scheme signs the body but not the place
        its default event id comes from (the README's list)."""
        guarded = set()
        for name in SCHEME_NAMES:
            scheme = get_scheme(name, header="X-Signature")
            if replay_guard_default(scheme, locators(scheme.default_id)):
                guarded.add(name)
        assert guarded == GUARDED_BY_DEFAULT
        hmac = get_scheme("hmac", header="X-Signature")
        assert replay_guard_default(hmac, locators(["header:x-request-id"]))
        assert not replay_guard_default(hmac, locators(["body:id"]))

    def test_guard_needs_a_dedupe_window(self) -> None:
        """replay_guard = true with dedupe_window = 0 is a configuration error; unset, the
        guard is then simply off."""
        source = {"scheme": "github", "secrets": ["s"], "dedupe_window": 0}
        with pytest.raises(ConfigError, match="replay_guard: needs a dedupe_window above 0"):
            parse_settings({"sources": {"gh": {**source, "replay_guard": True}}}, {})
        assert parse_settings({"sources": {"gh": source}}, {}).sources["gh"].replay_guard is None


def _pending(event_id: str, body: bytes, replay: bytes) -> Pending:
    return Pending(envelope(event_id, source="gh", body=body.decode()), 60, 0, replay)


class TestCommitScript:
    def test_a_replay_in_the_same_batch_is_refused_and_nothing_is_half_written(
        self, r: redis.Redis
    ) -> None:
        """Within one batch, a second event with the same replay key is a replay; a guarded
        and an unguarded event of the same queue both commit; a replay writes nothing."""
        enqueuer = Enqueuer(r)
        key = b"\xf0" * 32
        batch = [
            _pending("a", b"x", key),
            _pending("b", b"x", key),
            _pending("c", b"y", b""),
        ]
        assert enqueuer.commit(batch) == [Outcome.ENQUEUED, Outcome.REPLAY, Outcome.ENQUEUED]
        assert mark_state(r, "gh", "b", 60) == MarkState.UNSEEN
        before = r.dbsize()
        assert enqueuer.commit([_pending("d", b"x", key)]) == [Outcome.REPLAY]
        assert r.dbsize() == before
        assert sorted(e.id for e in queued_envelopes(r)) == ["a", "c"]
