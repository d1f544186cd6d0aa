"""Source address allowlists, X-Forwarded-For through trusted proxies, refused-request logs."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from hookline.ingest.addresses import AddressSet, forwarded_client
from hookline.ingest.app import METRICS
from hookline.logs import RateLimited
from tests.conftest import SOURCES, STRIPE_SECRET, ClientFactory, make_settings
from tests.helpers import queued_envelopes, signed, stripe_event

Client = TestClient[Any, Any]


def _settings(redis_url: str, allow: list[str], proxies: list[str] | None = None) -> Any:
    sources = {**SOURCES, "stripe": {**SOURCES["stripe"], "allow_ips": allow}}
    server = {"trusted_proxies": proxies} if proxies is not None else {}
    return make_settings(redis_url, sources=sources, server=server)


async def _post(client: Client, forwarded: str | None = None) -> Any:
    body = stripe_event()
    headers = signed("stripe", STRIPE_SECRET, body)
    if forwarded is not None:
        headers["X-Forwarded-For"] = forwarded
    return await client.post("/hooks/stripe", data=body, headers=headers)


class TestAllowlist:
    async def test_request_from_outside_the_allowlist_is_refused_403_and_counted(
        self, redis_url: str, client_for: ClientFactory, r: redis.Redis
    ) -> None:
        """A signed request from an address outside allow_ips gets a JSON 403, nothing is
        stored, the refusal is counted by reason, and logged at warning with the address."""
        client = await client_for(_settings(redis_url, ["192.0.2.0/24"]), redis_url)
        with capture_logs() as logs:
            resp = await _post(client)
        assert resp.status == 403
        assert (await resp.json())["error"] == "forbidden"
        assert r.dbsize() == 0
        text = generate_latest(client.app[METRICS].registry).decode()
        assert 'hookline_refused_requests_total{reason="address",source="stripe"} 1.0' in text
        [line] = [entry for entry in logs if entry["event"] == "webhook"]
        assert (line["log_level"], line["client"], line["outcome"]) == (
            "warning",
            "127.0.0.1",
            "address-refused",
        )

    async def test_request_from_inside_the_allowlist_is_accepted(
        self, redis_url: str, client_for: ClientFactory, r: redis.Redis
    ) -> None:
        """An address inside one of the ranges is accepted; other sources are unaffected."""
        client = await client_for(_settings(redis_url, ["192.0.2.0/24", "127.0.0.0/8"]), redis_url)
        assert (await _post(client)).status == 202
        assert len(queued_envelopes(r)) == 1

    @pytest.mark.parametrize(
        ("forwarded", "status"),
        [
            ("192.0.2.7", 202),
            # the client wrote the left part itself: only the hop the proxy saw counts
            ("203.0.113.9, 192.0.2.7", 202),
            ("192.0.2.7, 203.0.113.9", 403),
            ("not-an-address", 403),
            (None, 403),  # no header: the proxy itself is the client
        ],
    )
    async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
        self, redis_url: str, client_for: ClientFactory, forwarded: str | None, status: int
    ) -> None:
        """From a peer in server.trusted_proxies, the rightmost X-Forwarded-For address
        that is not a trusted proxy is the client the allowlist checks."""
        settings = _settings(redis_url, ["192.0.2.0/24"], proxies=["127.0.0.1"])
        client = await client_for(settings, redis_url)
        assert (await _post(client, forwarded)).status == status

    async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        self, redis_url: str, client_for: ClientFactory
    ) -> None:
        """Without trusted proxies (the default), X-Forwarded-For proves nothing."""
        client = await client_for(_settings(redis_url, ["192.0.2.0/24"]), redis_url)
        assert (await _post(client, "192.0.2.7")).status == 403


class TestForwardedClient:
    def test_walks_past_every_trusted_proxy_from_the_right(self) -> None:
        """Through a chain of trusted proxies the first untrusted hop from the right is the
        client; with every hop trusted, the leftmost."""
        trusted = AddressSet(["10.0.0.0/8", "2001:db8::/32"])
        assert forwarded_client("10.0.0.1", ["198.51.100.1, 10.0.0.2"], trusted) == "198.51.100.1"
        assert forwarded_client("10.0.0.1", ["1.1.1.1", "198.51.100.1,10.0.0.3"], trusted) == (
            "198.51.100.1"
        )
        assert forwarded_client("10.0.0.1", ["10.0.0.5, 10.0.0.2"], trusted) == "10.0.0.5"
        assert forwarded_client("2001:db8::1", ["198.51.100.1"], trusted) == "198.51.100.1"
        assert forwarded_client("192.0.2.1", ["10.0.0.9"], trusted) == "192.0.2.1"

    def test_ipv4_mapped_addresses_match_ipv4_ranges(self) -> None:
        """A dual-stack socket's ::ffff:192.0.2.1 is in 192.0.2.0/24; junk is in no range."""
        allowed = AddressSet(["192.0.2.0/24"])
        assert "::ffff:192.0.2.1" in allowed
        assert "192.0.2.255" in allowed
        assert "192.0.3.1" not in allowed
        assert "" not in allowed
        assert "garbage" not in allowed


class TestRefusedLines:
    def test_a_flood_of_refusals_writes_a_few_lines_a_second_and_counts_the_rest(self) -> None:
        """Past the burst, refused requests are not logged one by one; the next line written
        says how many were left out."""
        written: list[dict[str, object]] = []
        now = [100.0]
        limited = RateLimited(lambda _level, fields: written.append(fields), 3, lambda: now[0])
        for n in range(10):
            limited("warning", {"n": n})
        assert [line["n"] for line in written] == [0, 1, 2]
        now[0] = 101.2
        limited("warning", {"n": 10})
        assert written[-1] == {"n": 10, "suppressed": 7}
