"""The console in a real headless browser: Debian's chromium driven by Playwright.

A real ``hookline console`` process serves a real Redis; the browser logs in with the
token, filters the dead letters, opens one, replays it and sees the count go down.
Skipped where /usr/bin/chromium is missing, except under CI (``CI`` set), where it must
run: ``.ci/run`` installs chromium.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from hookline.console.security import login_link_code
from hookline.dlq.store import DeadLetters
from hookline.redis.embedded import free_port
from tests.console_support import TOKEN, kill
from tests.helpers import queued_envelopes
from tests.live import HOOKLINE, clean_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where to save screenshots of the pages, when set (for a person to look at them).
SCREENSHOTS_ENV = "CONSOLE_SCREENSHOTS"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium); "
    "always runs under CI",
)


def wait_for_console(port: int, proc: subprocess.Popen[bytes], within: float = 15.0) -> None:
    """Return once the console's login page answers on ``port``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"hookline console exited with {proc.returncode}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/login")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise AssertionError(f"the console did not answer on port {port} within {within} s")


@pytest.fixture
def console_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A real ``hookline console`` on a free loopback port, its token from the environment."""
    config = tmp_path / "hookline.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\n'
        '[sources.stripe]\nscheme = "stripe"\nsecrets = ["whsec_x"]\n'
        '[sources.github]\nscheme = "github"\nsecrets = ["gh"]\n'
    )
    port = free_port()
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [HOOKLINE, "console", "--config", str(config), "--port", str(port)],
            env=clean_env(HOOKLINE_CONSOLE_TOKEN=TOKEN),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_console(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert TOKEN not in log.read_text(errors="replace"), "the token was logged"


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Debian chromium, no downloads, no network beyond loopback."""
    assert CHROMIUM.exists(), "CI needs /usr/bin/chromium: .ci/run installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def screenshot(page: Page, name: str) -> None:
    """Save the page as a PNG where ``CONSOLE_SCREENSHOTS`` says, if it says."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        page.screenshot(path=str(Path(folder) / f"console-{name}.png"), full_page=True)


class TestConsoleInABrowser:
    def test_log_in_filter_view_replay_and_see_the_count_drop(
        self, console_url: str, browser: Browser, r: redis.Redis
    ) -> None:
        """An operator logs in, filters, opens an entry, replays it, and the counts follow."""
        now = time.time()
        for n in range(3):
            kill(r, f"evt_{n}", at=now - 300 + n)
        kill(r, "gh_1", source="github", event_type="push", error="TimeoutError", at=now - 200)
        kill(
            r,
            "gh_2",
            source="github",
            event_type="push",
            error="TimeoutError",
            message="read timed out",
            body=b'{"note": "<script>alert(1)</script>", "ref": "refs/heads/main"}',
            at=now - 100,
        )
        page = browser.new_page()
        page.set_default_timeout(10_000)
        dialogs: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)

        page.goto(f"{console_url}/")
        expect(page).to_have_url(f"{console_url}/login?next=/")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("#dead-total")).to_have_text("5")

        page.click("nav >> text=Dead letters")
        expect(page.locator("#letters tbody tr")).to_have_count(5)
        page.select_option("select[name=source]", "github")
        page.fill("input[name=error]", "timeout")
        page.click("form.filters button[type=submit]")
        expect(page.locator("#match-count")).to_have_text("2")
        expect(page.locator("#letters tbody tr")).to_have_count(2)
        screenshot(page, "list")

        page.click("#letters >> text=gh_2")
        expect(page.locator("h1")).to_contain_text("Dead letter")
        expect(page.locator("#body")).to_contain_text('"note": "<script>alert(1)</script>"')
        expect(page.locator("#attempts li")).to_have_count(2)
        expect(page.locator("#attempts")).to_contain_text("read timed out (attempt 2)")
        screenshot(page, "detail")

        page.click("#replay")
        expect(page.locator("#state")).to_have_text("done")
        expect(page.locator("#done")).to_have_text("1")
        screenshot(page, "operation")

        page.click("nav >> text=Overview")
        expect(page.locator("#dead-total")).to_have_text("4")
        screenshot(page, "overview")
        expect(page.locator("#by-source")).to_contain_text("github")
        page.goto(f"{console_url}/dead-letters?source=github")
        expect(page.locator("#match-count")).to_have_text("1")

        assert dialogs == [], "no script from an event ran"
        assert [e.id for e in queued_envelopes(r)] == ["gh_2"]
        assert DeadLetters(r).count() == 4

    def test_replay_all_matching_at_a_rate_after_confirming(
        self, console_url: str, browser: Browser, r: redis.Redis
    ) -> None:
        """ "Replay all matching" shows the count, asks, then replays at the rate typed."""
        for n in range(6):
            kill(r, f"gh_{n}", source="github", event_type="push")
        kill(r, "evt_1")
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{console_url}/dead-letters?source=github")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("#match-count")).to_have_text("6")
        page.fill("fieldset.actions input[name=rate]", "20")
        page.click("text=Replay all matching…")
        expect(page.locator("#confirm-summary")).to_contain_text("6 dead letters back")
        expect(page.locator("input[name=rate]")).to_have_value("20")
        screenshot(page, "confirm")
        assert DeadLetters(r).count() == 7, "nothing moves before the confirmation"
        page.click("#confirm")
        expect(page.locator("#state")).to_have_text("done")
        expect(page.locator("#done")).to_have_text("6")
        expect(page.locator(".facts")).to_contain_text("20/s")
        page.goto(f"{console_url}/")
        expect(page.locator("#dead-total")).to_have_text("1")
        assert sorted(e.id for e in queued_envelopes(r)) == [f"gh_{n}" for n in range(6)]

    def test_login_link_opens_the_console_once(
        self, console_url: str, browser: Browser, r: redis.Redis
    ) -> None:
        """The link `hookline dev` prints logs a real browser in (its SameSite=Strict cookie
        is sent after the redirect); the same link in a fresh browser is refused."""
        kill(r, "evt_1")
        link = f"{console_url}/login?link={login_link_code(TOKEN)}"
        first = browser.new_context().new_page()
        first.set_default_timeout(10_000)
        first.goto(link)
        expect(first).to_have_url(f"{console_url}/")
        expect(first.locator("#dead-total")).to_have_text("1")
        second = browser.new_context().new_page()
        second.goto(link)
        expect(second.locator(".error")).to_contain_text("used already")
        second.goto(f"{console_url}/")
        expect(second).to_have_url(f"{console_url}/login?next=/")
