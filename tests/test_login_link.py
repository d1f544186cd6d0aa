"""The console's one-time login link (what ``hookline dev`` prints), over HTTP, real Redis."""

from __future__ import annotations

import time

import pytest

from hookline.console.security import COOKIE, LINK_SECONDS, login_link_code
from tests.console_support import TOKEN
from tests.test_console import Client, anonymous, page

__all__ = ["anonymous"]  # the fixture, imported for pytest


async def use(client: Client, code: str, next_path: str | None = None) -> tuple[int, str, str]:
    """GET the login link: its status, Location and Set-Cookie headers."""
    query = {"link": code} | ({"next": next_path} if next_path else {})
    response = await client.get("/login", params=query, allow_redirects=False)
    await response.read()
    return (
        response.status,
        response.headers.get("Location", ""),
        response.headers.get("Set-Cookie", ""),
    )


class TestLoginLink:
    async def test_link_logs_in_with_a_strict_httponly_cookie(self, anonymous: Client) -> None:
        """A link made with the token opens a session: HttpOnly, SameSite=Strict, no token."""
        status, location, cookie = await use(anonymous, login_link_code(TOKEN))
        assert (status, location) == (303, "/")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert COOKIE in cookie and TOKEN not in cookie
        await page(anonymous, "/")

    async def test_link_goes_where_next_says_within_the_console(self, anonymous: Client) -> None:
        """``next`` is honoured for console pages and ignored for anywhere else."""
        assert (await use(anonymous, login_link_code(TOKEN), "/dead-letters"))[1] == "/dead-letters"
        assert (await use(anonymous, login_link_code(TOKEN), "//evil.example/"))[1] == "/"

    async def test_link_works_once(self, anonymous: Client) -> None:
        """The second use of a link is refused with a page saying so, and no cookie."""
        code = login_link_code(TOKEN)
        assert (await use(anonymous, code))[0] == 303
        anonymous.session.cookie_jar.clear()
        response = await anonymous.get("/login", params={"link": code}, allow_redirects=False)
        assert response.status == 401
        assert "used already or has expired" in await response.text()
        assert COOKIE not in response.headers.get("Set-Cookie", "")
        await page(anonymous, "/", status=303)

    async def test_used_link_clicked_again_while_logged_in_goes_on(self, anonymous: Client) -> None:
        """A browser that logged in with the link and opens it again is simply let in."""
        code = login_link_code(TOKEN)
        assert (await use(anonymous, code))[0] == 303
        status, location, cookie = await use(anonymous, code, "/dead-letters")
        assert (status, location, cookie) == (303, "/dead-letters", "")

    @pytest.mark.parametrize(
        "code",
        [
            login_link_code("another-token"),
            login_link_code(TOKEN, now=time.time() - LINK_SECONDS - 5),
            login_link_code(TOKEN, now=time.time() + 3600),
            login_link_code(TOKEN)[:-1] + "0",
            "",
            "1.a",
            "².a.b",
            "1.\udc80.ab",
            "..",
        ],
        ids=[
            "other-token",
            "expired",
            "future",
            "tampered",
            "empty",
            "short",
            "digit",
            "lone",
            "dots",
        ],
    )
    async def test_bad_link_is_refused_never_a_500(self, anonymous: Client, code: str) -> None:
        """A link not made with this token, expired, altered or malformed opens nothing."""
        status, _, cookie = await use(anonymous, code)
        assert status == 401 and COOKIE not in cookie
        await page(anonymous, "/", status=303)

    def test_code_holds_no_token(self) -> None:
        """The link carries an issue time, a nonce and a MAC: never the token itself."""
        code = login_link_code(TOKEN)
        issued, nonce, mac = code.split(".")
        assert TOKEN not in code and issued.isdigit() and len(nonce) == 32 and len(mac) == 64
        assert login_link_code(TOKEN) != code
