"""The web console's promises, over HTTP against a real Redis: access, pages, actions."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from structlog.testing import capture_logs

from hookline.cli.main import main
from hookline.console.app import create_console_app
from hookline.console.operations import MAX_RUNNING
from hookline.console.security import COOKIE
from hookline.dlq.store import DeadLetters, entry_id
from hookline.errors import ConfigError
from hookline.redis import keys
from hookline.redis.embedded import free_port
from tests.conftest import make_settings
from tests.console_support import TOKEN, csrf_of, kill, listed_event_ids, table
from tests.helpers import queued_envelopes

Client = TestClient[Any, Any]
Form = list[tuple[str, str]]
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 -- the address the console must refuse without a token


@pytest.fixture
async def anonymous(redis_url: str) -> AsyncIterator[Client]:
    """A console with the test sources and token, and a client that has not logged in."""
    # The proxy tests pass the Host a TLS proxy would: console.example.com.
    hosts = ["127.0.0.1", "localhost", "console.example.com"]
    settings = make_settings(redis_url, console={"token": TOKEN, "allowed_hosts": hosts})
    client = TestClient(TestServer(create_console_app(settings)))
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
async def console(anonymous: Client) -> Client:
    """The console, logged in through the form (a browser session with its cookie)."""
    response = await login(anonymous, TOKEN)
    assert response.status == 303
    return anonymous


def origin(client: Client) -> str:
    """The console's own origin, as a browser would send it."""
    return str(client.make_url("/").origin())


async def login(client: Client, token: str, next_path: str = "/") -> ClientResponse:
    return await client.post(
        "/login",
        data={"token": token, "next": next_path},
        headers={"Origin": origin(client)},
        allow_redirects=False,
    )


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, headers={"Accept": "text/html"}, allow_redirects=False)
    text = await response.text()
    assert response.status == status, text
    return text


async def post(
    client: Client, path: str, form: Form, *, headers: dict[str, str] | None = None
) -> ClientResponse:
    """POST ``form`` as the console's own pages do: with the session's CSRF token."""
    csrf = csrf_of(await page(client, "/"))
    return await client.post(
        path,
        data=[*form, ("csrf", csrf)],
        headers={"Origin": origin(client), **(headers or {})},
        allow_redirects=False,
    )


async def finished(client: Client, response: ClientResponse, within: float = 20.0) -> str:
    """Follow an action's redirect and wait until its operation is over; the final page."""
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location.startswith("/operations/")
    deadline = time.monotonic() + within
    while True:
        html = await page(client, location)
        if 'id="state" class="state-running"' not in html:
            return html
        assert time.monotonic() < deadline, "operation did not finish"
        await asyncio.sleep(0.05)


async def raw_status(client: Client, headers: bytes, path: bytes = b"/") -> int:
    """The status of a GET sent as raw bytes: header values no HTTP client library would send."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n" + headers)
        writer.write(b"Connection: close\r\n\r\n")
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


def ids(*event_ids: str, source: str = "stripe") -> Form:
    return [("id", entry_id(source, e)) for e in event_ids]


class TestAccess:
    async def test_page_without_token_redirects_to_login(self, anonymous: Client) -> None:
        """A browser without a session is sent to the login form, remembering where it was."""
        response = await anonymous.get(
            "/dead-letters?source=stripe", headers={"Accept": "text/html"}, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "/login?next=/dead-letters?source%3Dstripe"

    async def test_request_without_token_is_401(self, anonymous: Client, r: redis.Redis) -> None:
        """Without a token, scripts get 401 and actions do nothing."""
        kill(r, "evt_1")
        for method, path in (("GET", "/"), ("GET", "/dead-letters"), ("POST", "/replay")):
            response = await anonymous.request(method, path, data={"scope": "filtered"})
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert DeadLetters(r).count() == 1

    async def test_wrong_bearer_token_is_401(self, anonymous: Client) -> None:
        """A bearer token other than the configured one is refused."""
        for token in ("nope", TOKEN + "x", TOKEN[:-1], ""):
            response = await anonymous.get("/", headers={"Authorization": f"Bearer {token}"})
            assert response.status == 401

    async def test_odd_tokens_are_refused_not_crashed_on(self, console: Client) -> None:
        """Non-ASCII tokens and CSRF values are simply wrong: 401 and 403, never a 500."""
        assert (await login(console, "tökén\u2028")).status == 401
        response = await console.post(
            "/replay", data={"scope": "one", "csrf": "ü" * 64}, headers={"Origin": origin(console)}
        )
        assert response.status == 403

    async def test_right_bearer_token_opens_pages(self, anonymous: Client) -> None:
        """A script sending the token as a bearer token reads the pages."""
        response = await anonymous.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200
        assert "Dead letters" in await response.text()

    async def test_wrong_token_at_login_is_refused(self, anonymous: Client) -> None:
        """A wrong token at the form gets 401, no cookie, and is not shown back."""
        response = await login(anonymous, "guess-" + TOKEN[:8])
        assert response.status == 401
        assert COOKIE not in response.cookies
        assert "guess-" not in await response.text()
        await page(anonymous, "/", status=303)

    async def test_login_sets_a_strict_httponly_cookie(self, anonymous: Client) -> None:
        """The right token sets an HttpOnly, SameSite=Strict session cookie and goes on."""
        response = await login(anonymous, TOKEN, "/dead-letters")
        assert response.status == 303
        assert response.headers["Location"] == "/dead-letters"
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert TOKEN not in cookie
        await page(anonymous, "/dead-letters")

    async def test_login_goes_only_to_console_pages(self, anonymous: Client) -> None:
        """A ``next`` pointing elsewhere after login lands on the overview instead."""
        for target in (
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/ /evil.example",
        ):
            response = await login(anonymous, TOKEN, target)
            assert response.headers["Location"] == "/"

    async def test_forged_cookie_is_refused(self, anonymous: Client) -> None:
        """A session cookie not issued by this console opens nothing."""
        anonymous.session.cookie_jar.update_cookies(
            {COOKIE: f"{int(time.time())}.{'0' * 32}.{'f' * 64}"}
        )
        await page(anonymous, "/", status=303)

    @pytest.mark.parametrize(
        "cookie",
        [b"1.a.\xc3\xa9", b"1.\xff.abc", b"\xc2\xb2.a.b", b"1.\xed\xa0\x80.ab", b"..", b"1"],
    )
    async def test_malformed_cookie_is_not_logged_in_never_a_500(
        self, anonymous: Client, cookie: bytes
    ) -> None:
        """Any session cookie, whatever its bytes, either opens a session or is refused."""
        head = b"Cookie: " + COOKIE.encode() + b"=" + cookie + b"\r\n"
        assert await raw_status(anonymous, head + b"Accept: text/html\r\n") == 303
        assert await raw_status(anonymous, head) == 401

    async def test_logout_ends_the_session(self, console: Client) -> None:
        """After logging out the pages ask for the token again."""
        response = await post(console, "/logout", [])
        assert response.status == 303
        await page(console, "/", status=303)

    async def test_token_is_never_logged_or_echoed(self, anonymous: Client, r: redis.Redis) -> None:
        """Neither a right nor a wrong token appears in a log line or a page."""
        kill(r, "evt_1")
        with capture_logs() as logs:
            texts = [await (await login(anonymous, TOKEN + "-wrong")).text()]
            await login(anonymous, TOKEN)
            texts += [await page(anonymous, p) for p in ("/", "/dead-letters")]
            texts.append(await page(anonymous, f"/dead-letters/{entry_id('stripe', 'evt_1')}"))
            response = await post(anonymous, "/replay", [*ids("evt_1"), ("scope", "one")])
            texts.append(await finished(anonymous, response))
        assert logs, "the replay is logged"
        assert all(TOKEN not in text for text in texts)
        assert TOKEN not in repr(logs)

    async def test_every_response_carries_security_headers(self, console: Client) -> None:
        """Pages, errors and static files forbid framing, caching and scripts."""
        responses = [
            await console.get("/"),
            await console.get("/login"),
            await console.get("/static/console.css"),
            await console.get("/dead-letters/nope"),
            await console.get("/", headers={"Cookie": ""}, allow_redirects=False),
        ]
        for response in responses:
            assert response.headers["X-Frame-Options"] == "DENY"
            assert response.headers["Cache-Control"] == "no-store"
            csp = response.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
            assert "script-src" not in csp  # so no script runs at all


class TestCrossSite:
    async def test_action_without_csrf_token_is_refused(
        self, console: Client, r: redis.Redis
    ) -> None:
        """A same-origin POST without the session's CSRF token does nothing."""
        kill(r, "evt_1")
        for form in ([], [("csrf", "0" * 64)]):
            response = await console.post(
                "/replay",
                data=[*ids("evt_1"), ("scope", "one"), *form],
                headers={"Origin": origin(console)},
            )
            assert response.status == 403
        assert DeadLetters(r).count() == 1

    async def test_action_from_another_origin_is_refused(
        self, console: Client, r: redis.Redis
    ) -> None:
        """A POST from a foreign Origin, Referer or fetch site is refused even with the token."""
        kill(r, "evt_1")
        csrf = csrf_of(await page(console, "/"))
        form = [*ids("evt_1"), ("scope", "one"), ("csrf", csrf)]
        for headers in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Referer": "http://evil.example/page"},
            {"Origin": origin(console), "Sec-Fetch-Site": "cross-site"},
            {},
        ):
            response = await console.post(
                "/purge", data=[*form, ("confirm", "yes")], headers=headers
            )
            assert response.status == 403, headers
        assert DeadLetters(r).count() == 1

    async def test_origin_is_checked_against_the_host_behind_a_tls_proxy(
        self, console: Client, r: redis.Redis
    ) -> None:
        """Behind a proxy terminating TLS, the https Origin of the Host the proxy passes is ours."""
        kill(r, "evt_1")
        proxied = {"Host": "console.example.com"}
        for foreign in ("https://console.example.com.evil.example", "https://evil.example"):
            response = await post(
                console,
                "/replay",
                [*ids("evt_1"), ("scope", "one")],
                headers={**proxied, "Origin": foreign},
            )
            assert response.status == 403
        response = await post(
            console,
            "/replay",
            [*ids("evt_1"), ("scope", "one")],
            headers={**proxied, "Origin": "https://console.example.com"},
        )
        assert response.status == 303
        assert DeadLetters(r).count() == 0

    async def test_bearer_client_acts_without_csrf_but_not_cross_site(
        self, anonymous: Client, r: redis.Redis
    ) -> None:
        """A script with the bearer token needs no CSRF token; a foreign Origin is still refused."""
        kill(r, "evt_1")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        form = [*ids("evt_1"), ("scope", "one")]
        refused = await anonymous.post(
            "/replay", data=form, headers={**auth, "Origin": "http://evil.example"}
        )
        assert refused.status == 403
        response = await anonymous.post("/replay", data=form, headers=auth, allow_redirects=False)
        assert response.status == 303
        assert DeadLetters(r).count() == 0

    async def test_login_from_another_origin_is_refused(self, anonymous: Client) -> None:
        """The login form itself only accepts posts from the console's pages."""
        response = await anonymous.post(
            "/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}
        )
        assert response.status == 403


class TestOverview:
    async def test_counts_queues_retries_and_dead_letters(
        self, console: Client, r: redis.Redis
    ) -> None:
        """The overview shows queue depths, scheduled retries and counts by source, type, error."""
        for n in range(3):
            kill(r, f"evt_{n}")
        kill(r, "evt_x", event_type="customer.created", error="TimeoutError")
        kill(r, "gh_1", source="github", event_type="push", error="TimeoutError")
        r.rpush(keys.rq_queue("hookline"), "job-a", "job-b")
        r.rpush(keys.rq_queue("generic"), "job-c")
        r.zadd(keys.retries(), {"e1": 1.0, "e2": 2.0, "e3": 3.0, "e4": 4.0})
        html = await page(console, "/")
        assert re.search(r'id="dead-total">5<', html)
        assert re.search(r'id="retries">4<', html)
        assert 'Queue hookline</span>\n    <span class="big">2<' in html
        assert 'Queue generic</span>\n    <span class="big">1<' in html
        assert table(html, "by-source")[1:] == [["stripe", "4"], ["github", "1"]]
        assert table(html, "by-type")[1:] == [
            ["stripe", "invoice.paid", "3"],
            ["github", "push", "1"],
            ["stripe", "customer.created", "1"],
        ]
        assert table(html, "by-error")[1:] == [["ConnectionError", "3"], ["TimeoutError", "2"]]


class TestList:
    async def test_filters_by_source_type_error_and_time(
        self, console: Client, r: redis.Redis
    ) -> None:
        """Each filter narrows the list; the error filter looks in type and message."""
        now = time.time()
        kill(r, "old", at=now - 7200)
        kill(r, "paid", at=now - 60)
        kill(r, "created", event_type="customer.created", at=now - 50)
        kill(r, "slow", error="TimeoutError", message="read timed out", at=now - 40)
        kill(r, "gh", source="github", event_type="push", at=now - 30)
        cases = {
            "": ["gh", "slow", "created", "paid", "old"],
            "source=github": ["gh"],
            "source=stripe&type=invoice.paid": ["slow", "paid", "old"],
            "type=customer.*": ["created"],
            "type=*.paid": ["slow", "paid", "old"],
            "type=*i*v*i*e*.*p*d": ["slow", "paid", "old"],
            "type=*a*a*a*a*a*a*a*b": [],
            "error=timeout": ["slow"],
            "error=REFUSED": ["gh", "created", "paid", "old"],
            "since=1h": ["gh", "slow", "created", "paid"],
            "since=1h&until=45s": ["created", "paid"],
            "source=stripe&since=1h&error=connection": ["created", "paid"],
        }
        for query, expected in cases.items():
            html = await page(console, f"/dead-letters?{query}")
            assert listed_event_ids(html) == expected, query

    async def test_pages_newest_first_without_loading_everything(
        self, console: Client, r: redis.Redis
    ) -> None:
        """120 entries come 50 at a time, newest first, each page linking to the next."""
        now = time.time()
        for n in range(120):
            kill(r, f"evt_{n:03d}", at=now - 1000 + n)
        seen: list[str] = []
        path: str | None = "/dead-letters?source=stripe"
        while path is not None:
            html = await page(console, path)
            shown = listed_event_ids(html)
            assert len(shown) == (50 if len(seen) < 100 else 20)
            seen += shown
            found = re.search(r'<a href="([^"]+)" rel="next">', html)
            path = found.group(1).replace("&amp;", "&") if found else None
        assert seen == [f"evt_{n:03d}" for n in reversed(range(120))]
        assert re.search(r'id="match-count">120<', html)

    async def test_ages_read_as_in_the_cli(self, console: Client, r: redis.Redis) -> None:
        """An entry's age on the list and on its page reads as ``hookline dlq`` prints it."""
        letter = kill(r, "evt_old", at=time.time() - (3 * 3600 + 5 * 60))
        assert table(await page(console, "/dead-letters"), "letters")[1][1] == "3h05m ago"
        assert "(3h05m ago)" in await page(console, f"/dead-letters/{letter.id}")

    async def test_bad_time_is_explained(self, console: Client) -> None:
        """A ``since`` that is not a time answers 400 saying what to type."""
        html = await page(console, "/dead-letters?since=yesterday-ish", status=400)
        assert "is not a time" in html and "2h" in html


class TestDetail:
    async def test_shows_envelope_headers_body_and_every_attempt(
        self, console: Client, r: redis.Redis
    ) -> None:
        """An entry's page has its headers, its JSON body indented, and each attempt's error."""
        letter = kill(
            r,
            "evt_1",
            body=b'{"id":"evt_1","data":{"amount":4200}}',
            headers={"content-type": "application/json", "stripe-signature": "t=1,v1=abc"},
            attempts=3,
        )
        html = await page(console, f"/dead-letters/{letter.id}")
        assert table(html, "headers") == [
            ["content-type", "application/json"],
            ["stripe-signature", "t=1,v1=abc"],
        ]
        assert '"data": {\n    "amount": 4200\n  }' in html.replace("&#34;", '"')
        for n in (1, 2, 3):
            assert f"upstream refused the connection (attempt {n})" in html
        assert html.count("Traceback (most recent call last)") == 3
        assert "invoice.paid" in html and "exhausted" in html

    async def test_hostile_content_is_shown_as_text(self, console: Client, r: redis.Redis) -> None:
        """A body, header or error holding markup is escaped, never served as markup."""
        letter = kill(
            r,
            "evt_x",
            body=b'{"note": "<script>alert(1)</script>"}',
            headers={"x-evil": '"><img src=x onerror=alert(2)>'},
            message="<b>bold</b>",
        )
        html = await page(console, f"/dead-letters/{letter.id}")
        assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>bold" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=alert(2)&gt;" in html
        listing = await page(console, "/dead-letters")
        assert "<b>bold" not in listing and "&lt;b&gt;bold" in listing

    async def test_binary_body_is_shown_as_base64(self, console: Client, r: redis.Redis) -> None:
        """A body that is not text is shown as base64, saying so."""
        letter = kill(r, "evt_b", body=b"\xff\x00\xfe")
        html = await page(console, f"/dead-letters/{letter.id}")
        assert "binary, 3 bytes, base64" in html and "/wD+" in html

    async def test_unknown_entry_is_404(self, console: Client) -> None:
        """An id that is not a dead letter answers 404 with an explanation."""
        html = await page(console, "/dead-letters/0123456789abcdef0123", status=404)
        assert "replayed or purged" in html


class TestReplay:
    async def test_replay_one_puts_it_back_in_its_queue(
        self, console: Client, r: redis.Redis
    ) -> None:
        """Replaying an entry moves it out of the dead letters into its queue, attempts reset."""
        kill(r, "evt_1")
        kill(r, "gen_1", source="generic")
        response = await post(
            console, "/replay", [*ids("gen_1", source="generic"), ("scope", "one")]
        )
        html = await finished(console, response)
        assert 'id="done">1<' in html and "state-done" in html
        assert [e.id for e in queued_envelopes(r, "generic")] == ["gen_1"]
        assert queued_envelopes(r, "generic")[0].attempts == []
        assert queued_envelopes(r, "hookline") == []
        assert DeadLetters(r).count() == 1
        assert re.search(r'id="dead-total">1<', await page(console, "/"))

    async def test_replay_selected_moves_exactly_those(
        self, console: Client, r: redis.Redis
    ) -> None:
        """Only the selected entries are replayed; the rest stay dead."""
        for n in range(5):
            kill(r, f"evt_{n}")
        response = await post(
            console, "/replay", [*ids("evt_0", "evt_2", "evt_4"), ("scope", "selected")]
        )
        await finished(console, response)
        assert sorted(e.id for e in queued_envelopes(r)) == ["evt_0", "evt_2", "evt_4"]
        remaining = listed_event_ids(await page(console, "/dead-letters"))
        assert sorted(remaining) == ["evt_1", "evt_3"]

    async def test_replay_all_matching_asks_then_moves_only_matches(
        self, console: Client, r: redis.Redis
    ) -> None:
        """A filtered replay shows the count and waits for a yes; then it moves every match."""
        for n in range(7):
            kill(r, f"evt_{n}", error="TimeoutError" if n % 2 else "ConnectionError")
        kill(r, "gh_1", source="github", error="TimeoutError")
        filters: Form = [("scope", "filtered"), ("source", "stripe"), ("error", "timeout")]
        response = await post(console, "/replay", filters)
        assert response.status == 200
        html = await response.text()
        assert "Replay all dead letters: source stripe" in html
        assert "up to <strong>7</strong>" in html
        assert DeadLetters(r).count() == 8, "nothing moves before the confirmation"
        hidden = re.findall(r'<input type="hidden" name="([a-z]+)" value="([^"]*)">', html)
        response = await post(console, "/replay", [(k, v) for k, v in hidden if k != "csrf"])
        html = await finished(console, response)
        assert 'id="done">3<' in html
        assert sorted(e.id for e in queued_envelopes(r)) == ["evt_1", "evt_3", "evt_5"]
        assert DeadLetters(r).count() == 5

    async def test_paced_replay_runs_in_the_background_and_can_stop(
        self, console: Client, r: redis.Redis
    ) -> None:
        """A replay at 10/s shows progress while running; stopped, it left every event once."""
        for n in range(40):
            kill(r, f"evt_{n:02d}")
        form: Form = [
            ("scope", "filtered"),
            ("source", "stripe"),
            ("rate", "10"),
            ("confirm", "yes"),
        ]
        started = time.monotonic()
        response = await post(console, "/replay", form)
        location = response.headers["Location"]
        html = await page(console, location)
        assert "state-running" in html and "10/s" in html
        await asyncio.sleep(0.5)
        stop = await post(console, f"{location}/stop", [])
        html = await finished(console, stop)
        elapsed = time.monotonic() - started
        assert "state-stopped" in html
        moved = [e.id for e in queued_envelopes(r)]
        assert 0 < len(moved) < 40
        assert len(moved) <= 10 * elapsed + 2, "the rate was honoured"
        dead = {letter.envelope.id for letter in DeadLetters(r).scan()}
        assert len(set(moved)) == len(moved) and not dead & set(moved)
        assert len(dead) + len(moved) == 40, "nothing lost or doubled"
        # Running it again continues where it stopped.
        response = await post(console, "/replay", [*form[:2], ("confirm", "yes")])
        await finished(console, response)
        assert sorted(e.id for e in queued_envelopes(r)) == [f"evt_{n:02d}" for n in range(40)]
        assert DeadLetters(r).count() == 0

    async def test_running_operations_are_bounded(self, console: Client, r: redis.Redis) -> None:
        """Past MAX_RUNNING paced operations at once, another is refused and moves nothing."""
        for n in range(MAX_RUNNING + 1):
            kill(r, f"evt_{n}a")
            kill(r, f"evt_{n}b")
        forms = [
            [*ids(f"evt_{n}a", f"evt_{n}b"), ("scope", "selected"), ("rate", "0.5")]
            for n in range(MAX_RUNNING)
        ]
        started = await asyncio.gather(*(post(console, "/replay", form) for form in forms))
        assert [response.status for response in started] == [303] * MAX_RUNNING
        extra = [*ids(f"evt_{MAX_RUNNING}a"), ("scope", "one")]
        refused = await post(console, "/replay", extra)
        assert refused.status == 409
        assert "running already" in await refused.text()
        assert DeadLetters(r).get(entry_id("stripe", f"evt_{MAX_RUNNING}a"))
        for response in started:
            await finished(console, await post(console, f"{response.headers['Location']}/stop", []))

    async def test_shutdown_stops_a_replay_between_steps(
        self, redis_url: str, r: redis.Redis
    ) -> None:
        """A console stopped mid-replay leaves every event either dead or queued, once."""
        for n in range(30):
            kill(r, f"evt_{n:02d}")
        client = TestClient(
            TestServer(create_console_app(make_settings(redis_url, console={"token": TOKEN})))
        )
        await client.start_server()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        form = {"scope": "filtered", "confirm": "yes", "rate": "20"}
        response = await client.post("/replay", data=form, headers=auth, allow_redirects=False)
        assert response.status == 303
        stopping = time.monotonic()
        await client.close()
        assert time.monotonic() - stopping < 5
        moved = [e.id for e in queued_envelopes(r)]
        dead = {letter.envelope.id for letter in DeadLetters(r).scan()}
        assert 0 < len(moved) < 30
        assert len(set(moved)) == len(moved) and not dead & set(moved)
        assert len(dead) + len(moved) == 30

    async def test_bad_rate_is_refused(self, console: Client, r: redis.Redis) -> None:
        """A rate that is not a positive number is explained, nothing moves."""
        kill(r, "evt_1")
        for rate in ("fast", "0", "-5", "nan"):
            response = await post(
                console, "/replay", [*ids("evt_1"), ("scope", "one"), ("rate", rate)]
            )
            assert response.status == 400
            assert "events per second" in await response.text()
        assert DeadLetters(r).count() == 1


class TestPurge:
    async def test_purge_selected_asks_first(self, console: Client, r: redis.Redis) -> None:
        """Purging shows what goes and removes nothing until confirmed."""
        for n in range(3):
            kill(r, f"evt_{n}")
        form = [*ids("evt_0", "evt_1"), ("scope", "selected")]
        response = await post(console, "/purge", form)
        assert response.status == 200
        html = await response.text()
        assert "removes <strong>2</strong> dead letters for good" in html
        assert DeadLetters(r).count() == 3
        html = await finished(console, await post(console, "/purge", [*form, ("confirm", "yes")]))
        assert 'id="done">2<' in html
        assert [letter.envelope.id for letter in DeadLetters(r).scan()] == ["evt_2"]
        assert queued_envelopes(r) == [], "a purge enqueues nothing"

    async def test_purge_all_matching(self, console: Client, r: redis.Redis) -> None:
        """A confirmed filtered purge removes the matches and only them."""
        kill(r, "evt_1")
        kill(r, "gh_1", source="github")
        form: Form = [("scope", "filtered"), ("source", "github")]
        assert (await post(console, "/purge", form)).status == 200
        await finished(console, await post(console, "/purge", [*form, ("confirm", "yes")]))
        assert [letter.envelope.id for letter in DeadLetters(r).scan()] == ["evt_1"]


class TestRedisDown:
    async def test_pages_say_redis_is_unreachable(self) -> None:
        """With Redis down, pages answer 503 saying so, not a stack trace."""
        url = f"redis://127.0.0.1:{free_port()}/0"
        settings = make_settings(url, console={"token": TOKEN})
        async with TestClient(TestServer(create_console_app(settings))) as client:
            response = await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status == 503
            assert "Redis is unreachable" in await response.text()


class TestStartup:
    def test_no_token_refuses_to_start(self, redis_url: str) -> None:
        """Without console.token the console does not start, and says how to set one."""
        with pytest.raises(ConfigError, match="HOOKLINE_CONSOLE_TOKEN"):
            create_console_app(make_settings(redis_url))

    def test_command_refuses_public_address_without_token(
        self, redis_url: str, tmp_path: Path
    ) -> None:
        """``hookline console --host 0.0.0.0`` without a token exits with a clear error."""
        config = tmp_path / "hookline.toml"
        config.write_text(f'[redis]\nurl = "{redis_url}"\n')
        result = CliRunner().invoke(
            main,
            ["console", "--config", str(config), "--host", ALL_INTERFACES, "--port", "0"],
            env={"HOOKLINE_CONSOLE_TOKEN": None, "HOOKLINE_CONFIG": None},
        )
        assert result.exit_code == 1
        assert "console.token is not set" in result.output
        assert ALL_INTERFACES in result.output and "HOOKLINE_CONSOLE_TOKEN" in result.output

    def test_token_alone_is_not_enough_for_a_redis_less_config(self, tmp_path: Path) -> None:
        """A console without redis.url says so rather than failing later."""
        settings = make_settings(console={"token": TOKEN})
        with pytest.raises(ConfigError, match=r"redis\.url"):
            create_console_app(settings)


def test_body_json_is_pretty_printed_in_order(r: redis.Redis) -> None:
    """Pretty-printing keeps the sender's key order."""
    from hookline.console.pages import pretty_body

    letter = kill(r, "evt_1", body=orjson.dumps({"b": 1, "a": [1, 2]}))
    assert pretty_body(letter) == ('{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}', "JSON")
