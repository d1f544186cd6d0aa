"""The console's pages: login, overview, the filtered dead-letter list, an entry's detail.

Pages are rendered on the server with Jinja2, autoescaping everything: an event's body,
headers and errors are the sender's text and reach the page only as text. Finding and
counting entries is :mod:`hookline.dlq.search` / :mod:`hookline.dlq.ops`, shared with
``hookline dlq``; a page reads a bounded number of entries whatever the queue holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
import orjson
import structlog
from aiohttp import web
from yarl import URL

from hookline.config.settings import Settings
from hookline.console.operations import Operations
from hookline.console.security import COOKIE, SESSION, SESSION_SECONDS, Guard
from hookline.dlq.audit import AuditLog
from hookline.dlq.format import age
from hookline.dlq.ops import Selection, Stats, count, make_filter, stats
from hookline.dlq.search import Cursor, Filter, Page, Search
from hookline.dlq.store import DeadLetter, DeadLetters
from hookline.errors import DeadLetterError, HooklineError
from hookline.redis import keys

log = structlog.get_logger("hookline.console")

SETTINGS = web.AppKey("settings", Settings)
GUARD = web.AppKey("guard", Guard)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
DLQ = web.AppKey("dlq", DeadLetters)
OPERATIONS = web.AppKey("operations", Operations)
SEARCH = web.AppKey("search", Search)
QUEUES = web.AppKey("queues", list[str])

#: Entries on one page of the list.
PAGE_SIZE = 50
#: Entries passed over at most to fill one page (a rare match then gives a short page).
PAGE_BUDGET = 5000
#: Audit log entries the overview shows (console and command line alike).
AUDIT_SHOWN = 20
#: Largest body shown whole on an entry's page, in bytes.
BODY_LIMIT = 256 * 1024
#: The filter fields of forms and queries.
FILTER_FIELDS = ("source", "type", "error", "since", "until")
# Seconds a failed login waits before answering, to slow guessing.
_LOGIN_FAILURE_DELAY = 0.5


def when(ts: float | None) -> str:
    """A unix time as UTC date and time, ``—`` for none."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else age(seconds)


def _ago(ts: float | None) -> str:
    return "—" if ts is None else f"{age(time.time() - ts)} ago"


def templates() -> jinja2.Environment:
    """The Jinja2 environment: package templates, autoescape on for every template."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hookline.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["ago"] = _ago
    env.filters["duration"] = _duration
    return env


def render(
    request: web.Request,
    name: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> web.Response:
    """Render template ``name`` with the session's CSRF token and ``context``."""
    session = request.get(SESSION)
    html = (
        request.app[TEMPLATES]
        .get_template(name)
        .render(
            authed=session is not None,
            csrf=session.csrf if session else "",
            path=request.path,
            **context,
        )
    )
    return web.Response(text=html, status=status, content_type="text/html", headers=headers)


def safe_next(target: str) -> str:
    """``target`` when it is a path on this console, else ``/`` (no open redirects)."""
    # Browsers drop tabs and newlines and read "\\" as "/": "/\t/evil" is "//evil".
    if any(c.isspace() or c == "\\" or not c.isprintable() for c in target):
        return "/"
    if target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


async def login_form(request: web.Request) -> web.StreamResponse:
    """``GET /login``: the token form, or, with ``?link=CODE``, a one-time login link."""
    target = safe_next(request.query.get("next", "/"))
    code = request.query.get("link")
    if code is None:
        return render(request, "login.html", next=target)
    guard = request.app[GUARD]
    if guard.session(request) is not None:  # the link clicked again, already logged in
        raise web.HTTPSeeOther(target)
    if guard.use_link(code):
        raise _logged_in(request, target)
    await asyncio.sleep(_LOGIN_FAILURE_DELAY)
    return render(request, "login.html", status=401, next=target, link_failed=True)


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /login``: check the token, then set the session cookie and go on."""
    form = await request.post()
    given, target = form.get("token"), safe_next(str(form.get("next", "/")))
    guard = request.app[GUARD]
    if not guard.may_log_in(request):
        log.warning("console login refused: too many attempts", client=guard.client(request))
        return render(
            request,
            "error.html",
            status=429,
            title="Too many login attempts",
            message="Too many login attempts from here, or in all; wait a minute and try again.",
            headers={"Retry-After": "60"},
        )
    if not isinstance(given, str) or not guard.token_ok(given):
        log.warning("console login failed", client=guard.client(request))
        await asyncio.sleep(_LOGIN_FAILURE_DELAY)
        return render(request, "login.html", status=401, next=target, failed=True)
    raise _logged_in(request, target)


def _logged_in(request: web.Request, target: str) -> web.HTTPSeeOther:
    """The redirect to ``target`` that sets a fresh session cookie."""
    response = web.HTTPSeeOther(target)
    guard = request.app[GUARD]
    response.set_cookie(
        COOKIE,
        guard.new_cookie(),
        max_age=int(SESSION_SECONDS),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=guard.secure(request),
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout``: forget the session cookie."""
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


@dataclass(frozen=True, slots=True)
class Overview:
    """What the overview page shows: queue depths, retries and dead-letter counts."""

    depths: dict[str, int]
    retries: int
    dead: Stats


def read_overview(dlq: DeadLetters, queues: list[str]) -> Overview:
    """Read the overview from counters and lengths only: a few O(1) reads."""
    with dlq.client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(keys.rq_queue(queue))
        pipe.zcard(keys.retries())
        *depths, retries = pipe.execute()
    return Overview(dict(zip(queues, map(int, depths), strict=True)), int(retries), stats(dlq))


async def overview_page(request: web.Request) -> web.Response:
    """``GET /``: queue depths, retries, dead-letter counts and recent operations."""
    app = request.app
    data = await asyncio.to_thread(read_overview, app[DLQ], app[QUEUES])
    by_type = []
    for key, n in data.dead.by_type.items():
        source, _, event_type = key.partition("/")
        by_type.append((source, event_type, n))
    audit = await asyncio.to_thread(AuditLog(app[DLQ].client).recent, AUDIT_SHOWN)
    return render(
        request,
        "overview.html",
        o=data,
        by_type=by_type,
        operations=app[OPERATIONS].recent()[:10],
        audit=audit,
    )


def read_filter(fields: Mapping[str, str]) -> Filter:
    """The filter named by form or query fields, as typed by an operator.

    Raises:
        FilterError: when a time cannot be read.
    """
    field = {name: fields.get(name, "").strip() for name in FILTER_FIELDS}
    return make_filter(
        source=field["source"],
        type=field["type"],
        error=field["error"],
        since=field["since"],
        until=field["until"],
    )


def filter_fields(flt: Filter) -> dict[str, str]:
    """``flt`` as hidden form fields, times fixed as unix time."""
    fields = {
        "source": flt.source or "",
        "type": flt.type or "",
        "error": flt.error or "",
        "since": "" if flt.since is None else repr(flt.since),
        "until": "" if flt.until is None else repr(flt.until),
    }
    return {k: v for k, v in fields.items() if v}


def _find(
    search: Search, dlq: DeadLetters, flt: Filter, after: Cursor | None
) -> tuple[Page, int, bool]:
    found = search.page(flt, after=after, limit=PAGE_SIZE, max_scan=PAGE_BUDGET)
    if after is None and found.next is None:
        return found, len(found.items), True  # the whole match is on this page
    return (found, *count(dlq, Selection(filter=flt)))


async def list_page(request: web.Request) -> web.Response:
    """``GET /dead-letters``: the filtered list, newest first, one bounded page at a time."""
    app, query = request.app, request.query
    form = {name: query.get(name, "") for name in FILTER_FIELDS}
    dead = await asyncio.to_thread(stats, app[DLQ])
    context: dict[str, Any] = {
        "form": form,
        "sources": sorted(set(app[SETTINGS].sources) | set(dead.by_source)),
        "types": sorted({key.partition("/")[2] for key in dead.by_type}),
        "paged": "after" in query,
    }
    try:
        flt = read_filter(form)
        after = Cursor.parse(query["after"]) if query.get("after") else None
    except (HooklineError, ValueError) as exc:
        return render(request, "list.html", status=400, error=str(exc), **context)
    found, total, exact = await asyncio.to_thread(_find, app[SEARCH], app[DLQ], flt, after)
    next_url = None
    if found.next is not None:
        next_url = str(request.rel_url.update_query(after=found.next.token()))
    return render(
        request,
        "list.html",
        error=None,
        result=found,
        total=total,
        exact=exact,
        hidden=filter_fields(flt),
        next_url=next_url,
        first_url=str(request.rel_url.without_query_params("after")),
        **context,
    )


def pretty_body(letter: DeadLetter, limit: int = BODY_LIMIT) -> tuple[str, str]:
    """The body for display and what it is: indented JSON, text, or base64 for binary.

    A body over ``limit`` bytes is cut there (``hookline dlq show`` prints it whole).
    """
    body = letter.envelope.body
    if len(body) > limit:
        cut = body[:limit].decode("utf-8", errors="replace")
        return cut, f"first {limit} of {len(body)} bytes"
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode(), "JSON"
    except orjson.JSONDecodeError:
        pass
    try:
        return body.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return letter.envelope.to_dict()["body"], f"binary, {len(body)} bytes, base64"


async def detail_page(request: web.Request) -> web.Response:
    """``GET /dead-letters/{id}``: envelope, headers, body and every attempt."""
    entry = request.match_info["id"]
    try:
        letter = await asyncio.to_thread(request.app[DLQ].get, entry)
    except DeadLetterError:
        return render(
            request,
            "error.html",
            status=404,
            title="No such dead letter",
            message=f"There is no dead letter {entry}: it may have been replayed or purged.",
        )
    body, body_kind = pretty_body(letter)
    return render(
        request,
        "detail.html",
        letter=letter,
        body=body,
        body_kind=body_kind,
        back=str(URL("/dead-letters").with_query(source=letter.envelope.source)),
    )
