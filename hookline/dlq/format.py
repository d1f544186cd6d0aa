"""How ``hookline dlq`` shows dead letters: ages, the list table, one entry in full.

:func:`age` is also the console's, so that an age reads the same on a page and in a terminal.
Everything shown from Redis passes through :mod:`hookline.terminal`: a control character
in an event or an error is printed as an escape, never obeyed by the terminal.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from hookline.dlq.ops import Selection, summary
from hookline.dlq.store import DeadLetter
from hookline.terminal import safe, safe_json, safe_lines


def age(seconds: float) -> str:
    """An age or a span, in its two largest units: ``45s``, ``12m05s``, ``3h05m``, ``2d03h``.

    No spaces, so that it stays one column of a table; a negative span (clock skew) is ``0s``.
    """
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def cut(text: str, width: int) -> str:
    """``text`` on one line, shortened to ``width`` with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def when(ts: float, now: float) -> str:
    """A unix time in UTC, with how long ago it was."""
    moment = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment} ({age(now - ts)} ago)"


#: List columns: header, row key, widest shown.
_COLUMNS = (
    ("ID", "id", 20),
    ("AGE", "age", 8),
    ("SOURCE", "source", 16),
    ("TYPE", "type", 28),
    ("EVENT ID", "event_id", 28),
    ("ERROR", "error_type", 24),
    ("ATT", "attempts", 3),
)


def table(letters: Sequence[DeadLetter], now: float) -> str:
    """The list table; the message takes the width the terminal has left."""
    rows = []
    for letter in letters:
        row = summary(letter, now)
        row["age"] = age(now - letter.dead_at)
        rows.append({k: safe(str(v)) for k, v in row.items()})
    widths = [
        min(cap, max([len(header)] + [len(r[key]) for r in rows])) for header, key, cap in _COLUMNS
    ]
    room = shutil.get_terminal_size((120, 24)).columns - sum(w + 2 for w in widths)
    message_width = max(room, 20)
    lines = ["  ".join(h.ljust(w) for (h, _, _), w in zip(_COLUMNS, widths, strict=True))]
    lines[0] += "  MESSAGE"
    for r in rows:
        cells = [cut(r[key], w).ljust(w) for (_, key, _), w in zip(_COLUMNS, widths, strict=True)]
        lines.append("  ".join(cells) + "  " + cut(r["error_message"], message_width))
    return "\n".join(line.rstrip() for line in lines)


def _body(letter: DeadLetter) -> tuple[str, list[str]]:
    """What the body is, and its lines as shown: JSON indented, text, or base64."""
    body = letter.envelope.body
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    else:
        return "JSON", [safe_json(orjson.dumps(parsed, option=orjson.OPT_INDENT_2).decode())]
    try:
        return "text", list(safe_lines(body.decode("utf-8")))
    except UnicodeDecodeError:
        return "binary, shown as base64", [letter.envelope.to_dict()["body"]]


def detail(letter: DeadLetter, now: float) -> str:
    """Everything about one dead letter, for ``show``."""
    env = letter.envelope
    fields = [
        ("id", letter.id),
        ("source", env.source),
        ("event id", env.id),
        ("type", env.type),
        ("queue", env.queue),
        ("received", when(env.received_at, now)),
        ("dead", when(letter.dead_at, now)),
        ("reason", letter.reason),
        ("error", f"{letter.error_type}: {letter.error_message}"),
        ("worker", letter.worker),
    ]
    out = [f"{name:<10}{safe(str(value))}" for name, value in fields]
    out += ["", "headers"]
    out += [f"  {safe(k)}: {safe(v)}" for k, v in sorted(env.headers.items())]
    kind, body = _body(letter)
    out += ["", f"body ({kind}, {len(env.body)} bytes)", *body]
    out += ["", f"attempts ({len(env.attempts)})"]
    for number, attempt in enumerate(env.attempts, 1):
        at = attempt.get("at")
        stamp = when(float(at), now) if isinstance(at, int | float) else "?"
        error = safe(f"{attempt.get('error_type', '?')}: {attempt.get('message', '')}")
        worker = safe(f"(worker {attempt.get('worker', '?')}, {attempt.get('seconds', '?')} s)")
        out.append(f"  #{number}  {stamp}  {error}  {worker}")
        trace = str(attempt.get("traceback") or "").rstrip()
        out += [f"      {line}" for line in safe_lines(trace)]
    return "\n".join(out)


def describe(selection: Selection) -> str:
    """A selection in words, for a confirmation question."""
    if selection.ids:
        return f"{len(selection.ids)} named"
    f = selection.filter
    bits = [f"source={f.source}" if f.source else "", f"type={f.type}" if f.type else ""]
    bits += [f"error~{f.error!r}" if f.error else ""]
    bits += [f"since {when(f.since, time.time())}" if f.since is not None else ""]
    bits += [f"until {when(f.until, time.time())}" if f.until is not None else ""]
    return safe(", ".join(b for b in bits if b) or "all")
