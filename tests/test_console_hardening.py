"""The console's edges: times, cookies behind proxies, host names, login guessing, tokens,
and the audit log that records every replay, purge and export from console and CLI."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from hookline.cli.main import main
from hookline.console.app import create_console_app
from hookline.console.security import LOGINS_PER_ADDRESS
from hookline.dlq.audit import AuditEntry, AuditLog, cli_user
from hookline.errors import ConfigError
from tests.conftest import make_settings
from tests.console_support import TOKEN, csrf_of, kill

Client = TestClient[Any, Any]
Factory = Callable[..., Any]


@pytest.fixture
async def console_for(redis_url: str) -> AsyncIterator[Factory]:
    """Build consoles with given [console] and [server] keys, closed at the end."""
    clients: list[Client] = []

    async def build(console: dict[str, Any] | None = None, **tables: Any) -> Client:
        settings = make_settings(redis_url, console={"token": TOKEN, **(console or {})}, **tables)
        client = TestClient(TestServer(create_console_app(settings)))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


def _origin(client: Client) -> str:
    return str(client.make_url("/").origin())


async def _login(client: Client, token: str = TOKEN, **headers: str) -> Any:
    return await client.post(
        "/login",
        data={"token": token, "next": "/"},
        headers={"Origin": _origin(client), **headers},
        allow_redirects=False,
    )


class TestTimes:
    @pytest.mark.parametrize(
        "query",
        ["since=1e300", "until=inf", "since=nan", "until=-1e308", "since=99999999999999d"],
    )
    async def test_times_out_of_range_are_a_400(self, console_for: Factory, query: str) -> None:
        """A filter time beyond what a date can show, or not a number, is a 400 page."""
        client = await console_for()
        assert (await _login(client)).status == 303
        resp = await client.get(f"/dead-letters?{query}", headers={"Accept": "text/html"})
        assert resp.status == 400
        assert "out of range" in await resp.text() or "is not a time" in await resp.text()

    async def test_a_filtered_action_with_such_a_time_is_a_400(
        self, console_for: Factory, r: redis.Redis
    ) -> None:
        """The same in a replay form: refused before anything is counted or moved."""
        client = await console_for()
        await _login(client)
        csrf = csrf_of(await (await client.get("/dead-letters")).text())
        form = {"scope": "filtered", "until": "inf", "csrf": csrf}
        resp = await client.post("/replay", data=form, headers={"Origin": _origin(client)})
        assert resp.status == 400


class TestCookies:
    @pytest.mark.parametrize(
        ("console", "proxies", "forwarded", "secure"),
        [
            ({}, [], "https", False),  # from anyone, X-Forwarded-Proto proves nothing
            ({}, ["127.0.0.1"], "https", True),  # from a trusted proxy it does
            ({}, ["127.0.0.1"], "http", False),
            ({"secure_cookies": True}, [], None, True),
            ({"secure_cookies": False}, ["127.0.0.1"], "https", False),
        ],
    )
    async def test_session_cookie_is_secure_behind_a_tls_proxy(
        self,
        console_for: Factory,
        console: dict[str, Any],
        proxies: list[str],
        forwarded: str | None,
        secure: bool,
    ) -> None:
        """The cookie is Secure when console.secure_cookies says so, else when the request
        came over HTTPS through a proxy of server.trusted_proxies."""
        client = await console_for(console, server={"trusted_proxies": proxies})
        headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
        resp = await _login(client, **headers)
        assert resp.status == 303
        cookie = resp.headers["Set-Cookie"]
        assert ("Secure" in cookie) == secure, cookie


class TestHosts:
    @pytest.mark.parametrize("path", ["/login", "/", "/static/console.css"])
    async def test_an_unknown_host_name_is_refused_before_login(
        self, console_for: Factory, path: str
    ) -> None:
        """A request naming another host (DNS rebinding) gets 421, even the login form."""
        client = await console_for()
        resp = await client.get(path, headers={"Host": "attacker.example:8081"})
        assert resp.status == 421
        assert (await client.get("/login", headers={"Host": "localhost:8081"})).status == 200

    async def test_allowed_hosts_replace_the_loopback_names(self, console_for: Factory) -> None:
        """With console.allowed_hosts set, those names are served and loopback ones not."""
        client = await console_for({"allowed_hosts": ["console.example.com"]})
        ok = await client.get("/login", headers={"Host": "console.example.com"})
        assert ok.status == 200
        assert (await client.get("/login", headers={"Host": "127.0.0.1"})).status == 421


class TestLogin:
    async def test_guesses_from_one_address_are_limited_even_in_parallel(
        self, console_for: Factory
    ) -> None:
        """Parallel wrong guesses from one address use up its attempts; then even the right
        token gets 429 from there, while another address still logs in."""
        client = await console_for(server={"trusted_proxies": ["127.0.0.1"]})
        guesses = [
            _login(client, "wrong-token-0000000000000000", **{"X-Forwarded-For": "198.51.100.7"})
            for _ in range(LOGINS_PER_ADDRESS.amount)
        ]
        assert {r.status for r in await asyncio.gather(*guesses)} == {401}
        refused = await _login(client, **{"X-Forwarded-For": "198.51.100.7"})
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "60"
        assert (await _login(client, **{"X-Forwarded-For": "198.51.100.8"})).status == 303

    async def test_guesses_from_many_addresses_are_limited_in_all(
        self, console_for: Factory
    ) -> None:
        """Spread over many addresses, the guesses still meet the limit for all."""
        client = await console_for(server={"trusted_proxies": ["127.0.0.1"]})
        guesses = [
            _login(client, "wrong-token-0000000000000000", **{"X-Forwarded-For": f"203.0.113.{n}"})
            for n in range(60)
        ]
        await asyncio.gather(*guesses)
        assert (await _login(client, **{"X-Forwarded-For": "192.0.2.1"})).status == 429

    async def test_a_short_token_is_refused_at_start_up(self, redis_url: str) -> None:
        """A token under 24 characters stops the console from starting, saying why."""
        settings = make_settings(redis_url, console={"token": "short-token"})
        with pytest.raises(ConfigError, match="too short"):
            create_console_app(settings)


class TestAudit:
    async def test_console_and_cli_operations_are_recorded_and_shown(
        self, console_for: Factory, r: redis.Redis, redis_url: str
    ) -> None:
        """A replay from the console and a purge and an export from the CLI each leave a
        start and an end entry (who, what, counts); the overview and hookline audit show
        them all."""
        kill(r, "evt_console")
        client = await console_for()
        await _login(client)
        entry = await asyncio.to_thread(AuditLog(r).recent)  # empty so far
        assert entry == []
        csrf = csrf_of(await (await client.get("/dead-letters")).text())
        letter_id = re.search(
            r'name="id" value="([^"]+)"', await (await client.get("/dead-letters")).text()
        )
        assert letter_id is not None
        form = {"scope": "one", "id": letter_id.group(1), "csrf": csrf}
        resp = await client.post("/replay", data=form, headers={"Origin": _origin(client)})
        assert resp.status in (200, 303)
        kill(r, "evt_cli")
        env = {"HOOKLINE_REDIS_URL": redis_url}
        runner = CliRunner()
        assert runner.invoke(main, ["dlq", "export"], env=env).exit_code == 0
        assert runner.invoke(main, ["dlq", "purge", "--all", "--yes"], env=env).exit_code == 0

        entries = AuditLog(r).recent()
        summary = [(e.via, e.action, e.state) for e in entries]
        assert summary == [
            ("cli", "purge", "done"),
            ("cli", "purge", "started"),
            ("cli", "export", "done"),
            ("cli", "export", "started"),
            ("console", "replay", "done"),
            ("console", "replay", "started"),
        ]
        assert entries[0].who == cli_user() and entries[0].counts["done"] == 1
        assert entries[4].who.startswith("console session ")
        assert entries[4].who.endswith(" from 127.0.0.1")
        overview = await (await client.get("/")).text()
        assert overview.count("<td>cli</td>") == 4 and overview.count("<td>console</td>") == 2
        table = runner.invoke(main, ["audit"], env=env)
        assert table.exit_code == 0 and len(table.output.splitlines()) == 7
        lines = runner.invoke(main, ["audit", "--json"], env=env).output.splitlines()
        assert [orjson.loads(line)["action"] for line in lines][:2] == ["purge", "purge"]

    def test_audit_output_is_terminal_safe(self, r: redis.Redis, redis_url: str) -> None:
        """Control characters in an entry reach the terminal escaped."""
        AuditLog(r).record(AuditEntry("replay", "\x1b]0;x\x07who", "cli", "sel\x9b", "done"))
        result = CliRunner().invoke(main, ["audit"], env={"HOOKLINE_REDIS_URL": redis_url})
        assert result.exit_code == 0
        assert "\\x1b]0;x\\x07who" in result.output and "sel\\x9b" in result.output
        assert not any(c in result.output for c in "\x1b\x07\x9b")
