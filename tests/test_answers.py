"""Consistent answers: JSON everywhere, the id and type the handler will see, clear refusals."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from hookline.workers.handlers import Event
from tests.conftest import SOURCES, STRIPE_SECRET, make_settings
from tests.helpers import queued_envelopes, signed

Client = TestClient[Any, Any]


async def _stripe(client: Client, body: bytes) -> Any:
    return await client.post(
        "/hooks/stripe", data=body, headers=signed("stripe", STRIPE_SECRET, body)
    )


class TestEveryAnswerIsJson:
    @pytest.mark.parametrize(
        ("method", "path", "status", "allow"),
        [
            ("GET", "/hooks/stripe", 405, "POST"),
            ("PUT", "/hooks/nope", 405, "POST"),
            ("POST", "/healthz", 405, "GET"),
            ("DELETE", "/readyz", 405, "GET"),
            ("GET", "/", 404, None),
            ("POST", "/hooks", 404, None),
            ("GET", "/hooks/stripe/extra", 404, None),
        ],
    )
    async def test_wrong_method_or_path_answers_json(
        self, client: Client, method: str, path: str, status: int, allow: str | None
    ) -> None:
        """A wrong method is a JSON 405 naming the allowed one; an unknown path a JSON 404."""
        resp = await client.request(method, path)
        assert resp.status == status
        assert resp.content_type == "application/json"
        assert set(await resp.json()) == {"error", "detail"}
        assert resp.headers.get("Allow") == allow


class TestIdAndTypeAgree:
    @pytest.mark.parametrize(
        "body",
        [
            b'{"id": "evt_a", "type": "invoice.paid", "id": "evt_b"}',
            b'{"id": "evt_a", "type": "invoice.paid", "\\u0069d": "evt_b"}',
            b'{"id": "evt_a", "type": "invoice.paid", "type": "charge.refunded"}',
        ],
    )
    async def test_a_key_repeated_on_a_locators_path_is_refused(
        self, client: Client, r: redis.Redis, body: bytes
    ) -> None:
        """A signed body holding the id or type key twice (escaped spellings included) is
        refused with 400: the receiver (first value) and event.json() (last) would differ."""
        resp = await _stripe(client, body)
        assert resp.status == 400
        assert "repeats the key" in (await resp.json())["detail"]
        assert r.dbsize() == 0

    async def test_a_repeated_key_on_a_nested_path_is_refused(
        self, redis_url: str, client_for: Any, r: redis.Redis
    ) -> None:
        """With id = body:data.object.id, a repeated "data" key is refused too."""
        sources = {**SOURCES, "stripe": {**SOURCES["stripe"], "id": "body:data.object.id"}}
        client = await client_for(make_settings(sources=sources), redis_url)
        body = b'{"type": "t", "data": {"object": {"id": "a"}}, "data": {"object": {"id": "b"}}}'
        assert (await _stripe(client, body)).status == 400

    async def test_keys_repeated_elsewhere_do_not_matter_and_the_handler_agrees(
        self, client: Client, r: redis.Redis
    ) -> None:
        """Repeats off the locators' paths are accepted, and the handler's event.json()
        reads the very id and type the receiver committed."""
        body = b'{"id": "evt_1", "type": "invoice.paid", "data": {"n": 1, "n": 2}}'
        assert (await _stripe(client, body)).status == 202
        [env] = queued_envelopes(r)
        parsed = Event.from_envelope(env).json()
        assert (env.id, env.type) == (parsed["id"], parsed["type"]) == ("evt_1", "invoice.paid")


class TestRefusals:
    async def test_a_body_that_is_not_json_says_so(self, client: Client, r: redis.Redis) -> None:
        """A signed body that is neither JSON nor a form is refused 400, saying it is not JSON."""
        resp = await _stripe(client, b"\x00\x01 definitely <not> json")
        assert resp.status == 400
        assert "the body is not JSON" in (await resp.json())["detail"]

    async def test_a_flood_of_refusals_is_logged_a_few_lines_a_second(self, client: Client) -> None:
        """100 requests with a wrong signature: each answered 401, at most 20 warning lines
        (with the client address) in that second, the next one counting the rest."""
        with capture_logs() as logs:
            for _ in range(100):
                resp = await client.post(
                    "/hooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}
                )
                assert resp.status == 401
        lines = [line for line in logs if line["event"] == "webhook"]
        assert 20 <= len(lines) <= 40, len(lines)  # 20 a second; the loop may span two
        assert {line["log_level"] for line in lines} == {"warning"}
        assert {line["client"] for line in lines} == {"127.0.0.1"}
