"""``hookline check`` imports every handler module, as real processes in a project directory."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from hookline.cli.check import run_checks
from tests.live import run

SOURCES = """
[sources.shop]
scheme = "hmac"
secrets = ["s"]
signature_header = "X-Sig"

[sources.stripe]
scheme = "stripe"
secrets = [{ env = "STRIPE_WEBHOOK_SECRET" }]
"""

GOOD = """
from hookline import Event, on


@on("shop", "order.created")
def created(event: Event) -> None: ...


@on("shop")
def anything_else(event: Event) -> None: ...
"""


def project(directory: Path, redis_url: str, handlers: list[str], **modules: str) -> None:
    """Write ``hookline.toml`` naming ``handlers`` and the modules (``name=source``)."""
    for name, text in modules.items():
        (directory / f"{name}.py").write_text(text)
    listed = ", ".join(f'"{h}"' for h in handlers)
    (directory / "hookline.toml").write_text(
        f'[redis]\nurl = "{redis_url}"\n{SOURCES}\n[workers]\nhandlers = [{listed}]\n'
    )


def check(directory: Path, **env: str) -> tuple[int, list[str]]:
    """Run ``hookline check`` in ``directory`` as a process: exit status and output lines."""
    done = run("check", "--config", "hookline.toml", cwd=directory, env=env)
    assert "Traceback" not in done.stdout + done.stderr
    return done.returncode, done.stdout.splitlines()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path`` on ``sys.path`` for in-process checks (as the command puts the current
    directory there); module names are made unique per test, as imports are cached."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def unique(name: str) -> str:
    """A module name no other test imported."""
    return f"{name}_{uuid.uuid4().hex[:8]}"


def findings(directory: Path, **env: str) -> list[str]:
    """``hookline check``'s lines for ``directory``'s configuration, checked in-process."""
    return [str(f) for f in run_checks(str(directory / "hookline.toml"), env)]


class TestHandlers:
    def test_importable_modules_pass_with_their_routes(self, here: Path, redis_url: str) -> None:
        """Each module importable from the current directory is listed with its routes."""
        good = unique("good")
        project(here, redis_url, [good], **{good: GOOD})
        lines = findings(here, STRIPE_WEBHOOK_SECRET="whsec_x")
        assert f"ok: handlers {good}: 2 routes: shop/*, shop/order.created" in lines
        assert not [line for line in lines if line.startswith("error")]

    def test_missing_module_fails_naming_it(self, tmp_path: Path, redis_url: str) -> None:
        """`hookline check` (a process) names a module that does not exist in one error
        line, checks the others, and exits 1."""
        project(tmp_path, redis_url, ["good", "nowhere.handlers"], good=GOOD)
        code, lines = check(tmp_path, STRIPE_WEBHOOK_SECRET="whsec_x")
        assert code == 1
        errors = [line for line in lines if line.startswith("error:")]
        assert errors == [
            "error: workers.handlers: cannot import 'nowhere.handlers': "
            "ModuleNotFoundError: No module named 'nowhere'"
        ]
        assert "ok: handlers good: 2 routes: shop/*, shop/order.created" in lines

    def test_syntax_error_is_one_line(self, here: Path, redis_url: str) -> None:
        """A module that does not parse is one error line naming it."""
        typo = unique("typo")
        project(here, redis_url, [typo], **{typo: "def handler(:\n"})
        lines = findings(here, STRIPE_WEBHOOK_SECRET="whsec_x")
        assert next(line for line in lines if typo in line).startswith(
            f"error: workers.handlers: cannot import {typo!r}: SyntaxError: "
        )

    def test_module_that_fails_at_import_names_the_error(self, here: Path, redis_url: str) -> None:
        """A module raising at import (a broken import of its own) is named with the error."""
        broken = unique("broken")
        project(here, redis_url, [broken], **{broken: "from nowhere.settings import DB_URL\n"})
        assert (
            f"error: workers.handlers: cannot import {broken!r}: "
            "ModuleNotFoundError: No module named 'nowhere'"
        ) in findings(here, STRIPE_WEBHOOK_SECRET="whsec_x")

    def test_module_without_handlers_fails(self, here: Path, redis_url: str) -> None:
        """A module that registers nothing is an error: the worker would refuse it."""
        empty = unique("empty")
        project(here, redis_url, [empty], **{empty: "X = 1\n"})
        assert (
            f"error: workers.handlers: module {empty!r} has no function decorated with @on(...)"
        ) in findings(here, STRIPE_WEBHOOK_SECRET="whsec_x")

    def test_two_modules_routing_the_same_events_fail(self, here: Path, redis_url: str) -> None:
        """Two modules each handling shop/order.created is an error naming both handlers."""
        one, two = unique("one"), unique("two")
        project(here, redis_url, [one, two], **{one: GOOD, two: GOOD})
        errors = [
            line
            for line in findings(here, STRIPE_WEBHOOK_SECRET="whsec_x")
            if line.startswith("error")
        ]
        assert len(errors) == 1
        assert errors[0].startswith("error: two handlers for shop/")
        assert f"{one}." in errors[0] and f"{two}." in errors[0]

    def test_route_for_an_unconfigured_source_is_a_warning(
        self, here: Path, redis_url: str
    ) -> None:
        """A handler for a source that is not configured (a typo) is warned about."""
        typo = unique("typo")
        project(here, redis_url, [typo], **{typo: GOOD.replace('@on("shop")', '@on("shpo")')})
        assert (
            f"warning: handler {typo}.anything_else is for source 'shpo', which is not "
            "configured: its events never arrive"
        ) in findings(here, STRIPE_WEBHOOK_SECRET="whsec_x")

    def test_no_handlers_is_said(self, here: Path, redis_url: str) -> None:
        """A configuration without handler modules (a receiver's own) says so, as info."""
        project(here, redis_url, [])
        assert "info: workers.handlers is empty: a worker would handle no event" in findings(
            here, STRIPE_WEBHOOK_SECRET="whsec_x"
        )

    def test_sources_missing_secrets_are_not_no_sources(self, here: Path, redis_url: str) -> None:
        """When every source lacks its secret, check says so, never "no sources configured",
        and a handler for such a source is not called unconfigured."""
        name = unique("stripe_handlers")
        (here / f"{name}.py").write_text(GOOD.replace("shop", "stripe"))
        (here / "hookline.toml").write_text(
            f'[redis]\nurl = "{redis_url}"\n'
            '[sources.stripe]\nscheme = "stripe"\n'
            'secrets = [{ env = "STRIPE_WEBHOOK_SECRET" }]\n'
            f'[workers]\nhandlers = ["{name}"]\n'
        )
        lines = findings(here)
        assert (
            "error: secrets missing for source stripe: STRIPE_WEBHOOK_SECRET is not set; "
            "export it or remove the entry from sources.stripe.secrets"
        ) in lines
        assert not any("no sources" in line or "not configured" in line for line in lines)
        assert f"ok: handlers {name}: 2 routes: stripe/*, stripe/order.created" in lines
