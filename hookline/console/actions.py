"""The console's actions: replay and purge of one, selected or all matching entries.

Every action runs as an :class:`~hookline.console.operations.Operation` and answers
with a redirect to its progress page; one that finishes within :data:`SETTLE` seconds
(a single entry, a page's selection without a rate) shows up already done. Purges, and
anything acting on all matching entries, first show what they will touch and ask; the
end of a filtered selection is fixed when that question is shown, so the action does
what was confirmed and never chases events that die again while it runs.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

from aiohttp import web

from hookline.console.operations import Kind, Operation
from hookline.console.pages import (
    DLQ,
    GUARD,
    OPERATIONS,
    filter_fields,
    read_filter,
    render,
    when,
)
from hookline.console.security import SESSION
from hookline.dlq.audit import AuditLog
from hookline.dlq.ops import Bulk, Selection, count
from hookline.dlq.search import Filter
from hookline.errors import ActionError, BusyError, HooklineError

#: Seconds an action waits for its operation before answering with the progress page.
SETTLE = 1.0
#: Most entries one request may name.
MAX_SELECTED = 5000


def parse_rate(text: str) -> float | None:
    """Events per second from a form field; empty means as fast as Redis goes.

    Raises:
        ActionError: when the text is not a positive number.
    """
    text = text.strip()
    if not text:
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise ActionError(f"Rate {text!r}: expected events per second, such as 50 or 0.5.")
    return rate


def describe(flt: Filter) -> str:
    """A filter in words, for confirmation and progress pages."""
    parts = []
    if flt.source:
        parts.append(f"source {flt.source}")
    if flt.type:
        parts.append(f"type {flt.type}")
    if flt.error:
        parts.append(f"error containing “{flt.error}”")
    if flt.since is not None:
        parts.append(f"dead since {when(flt.since)}")
    if flt.until is not None:
        parts.append(f"dead by {when(flt.until)}")
    return "all dead letters" + (": " + ", ".join(parts) if parts else "")


def selection_of(scope: str, ids: list[str], fields: Mapping[str, str]) -> tuple[Selection, str]:
    """What an action's form selects, and that in words.

    Raises:
        ActionError: for an unknown scope, no ids, too many ids, or a bad filter.
    """
    if scope in ("one", "selected"):
        if not ids:
            raise ActionError("Select at least one entry first.")
        if len(ids) > MAX_SELECTED:
            raise ActionError(f"At most {MAX_SELECTED} entries at once; use a filter instead.")
        what = f"entry {ids[0]}" if len(ids) == 1 else f"{len(ids)} selected entries"
        return Selection(ids=tuple(ids)), what
    if scope == "filtered":
        selection = Selection(filter=read_filter(fields)).frozen()
        return selection, describe(selection.filter)
    raise ActionError(f"Unknown scope {scope!r}: expected one, selected or filtered.")


async def _act(request: web.Request, kind: Kind) -> web.StreamResponse:
    form = await request.post()
    fields: Mapping[str, str] = {k: v for k, v in form.items() if isinstance(v, str)}
    scope = fields.get("scope", "")
    ids = list(dict.fromkeys(i for i in form.getall("id", []) if isinstance(i, str) and i))
    dlq = request.app[DLQ]
    try:
        rate = parse_rate(fields.get("rate", "")) if kind == "replay" else None
        selection, what = selection_of(scope, ids, fields)
    except HooklineError as exc:
        return render(request, "error.html", status=400, title="Cannot do that", message=str(exc))
    if (kind == "purge" or scope == "filtered") and fields.get("confirm") != "yes":
        total, exact = await asyncio.to_thread(count, dlq, selection)
        return render(
            request,
            "confirm.html",
            kind=kind,
            scope=scope,
            what=what,
            ids=ids,
            total=total,
            exact=exact or bool(ids),
            rate=fields.get("rate", ""),
            hidden=filter_fields(selection.filter),
        )
    ops = request.app[OPERATIONS]
    try:
        ops.check_room()
        bulk = await asyncio.to_thread(Bulk, dlq, selection, purge=kind == "purge", rate=rate)
        who = request.app[GUARD].who(request, request[SESSION])
        op = ops.start(Operation(kind, what, bulk, who=who, audit=AuditLog(dlq.client)))
    except BusyError as exc:
        return render(request, "error.html", status=409, title="Busy", message=str(exc))
    await ops.settle(op, SETTLE)
    raise web.HTTPSeeOther(f"/operations/{op.id}")


async def replay(request: web.Request) -> web.StreamResponse:
    """``POST /replay``: put entries back in their queues, atomically, at a chosen rate."""
    return await _act(request, "replay")


async def purge(request: web.Request) -> web.StreamResponse:
    """``POST /purge``: remove entries for good, after a confirmation."""
    return await _act(request, "purge")


def _operation(request: web.Request) -> Operation:
    op = request.app[OPERATIONS].get(request.match_info["op"])
    if op is None:
        raise web.HTTPNotFound(text="no such operation (the console may have restarted)")
    return op


async def operation_page(request: web.Request) -> web.Response:
    """``GET /operations/{op}``: progress of a replay or purge, refreshing while it runs."""
    return render(request, "operation.html", op=_operation(request))


async def stop_operation(request: web.Request) -> web.StreamResponse:
    """``POST /operations/{op}/stop``: stop after the current atomic step."""
    op = _operation(request)
    op.stop.set()
    raise web.HTTPSeeOther(f"/operations/{op.id}")
