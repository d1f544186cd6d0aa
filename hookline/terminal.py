"""Text from Redis made safe for an operator's terminal.

What hookline prints comes partly from senders and handlers: an event's headers and
body, an exception's message and traceback. A control character in them (``ESC ]0;…BEL``
retitles the window, other sequences move the cursor, rewrite what is on screen, or on
some terminals answer back) must reach the screen as visible text, never as a command.
Every printer of the command line passes stored text through :func:`safe` (one value,
every control character escaped) or :func:`safe_lines` (text whose line breaks are
layout); :func:`safe_json` does the same for JSON output, which already escapes C0.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

#: C0 controls, DEL and C1 controls: Unicode's whole "Cc" category.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: The characters JSON text may hold unescaped that a terminal obeys: DEL and C1.
_JSON_CONTROL = re.compile(r"[\x7f-\x9f]")
#: Short escapes for the controls that have one.
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT.get(char) or f"\\x{ord(char):02x}"


def safe(text: str) -> str:
    """``text`` with every control character (newlines included) written as an escape:
    ``\\x1b``, ``\\n``, ``\\x9b``. For one value on one line."""
    if text.isascii() and text.isprintable():  # the usual case: nothing to do
        return text
    return _CONTROL.sub(_escape, text)


def safe_lines(text: str) -> Iterator[str]:
    """The lines of ``text`` (a body, a traceback), each made :func:`safe`: the line
    breaks stay layout, every other control character is escaped."""
    for line in text.split("\n"):
        yield safe(line)


def safe_json(text: str) -> str:
    """JSON text with DEL and C1 controls escaped as ``\\u007f``…``\\u009f``: the same
    JSON value, nothing a terminal obeys (JSON encoders already escape C0)."""
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


#: DEL and the C1 controls as UTF-8 bytes.
_JSON_CONTROL_BYTES = re.compile(rb"\x7f|\xc2[\x80-\x9f]")


def safe_json_bytes(data: bytes) -> bytes:
    """:func:`safe_json` for UTF-8 JSON bytes (an export streamed to standard output)."""
    if data.isascii() and b"\x7f" not in data:
        return data
    return _JSON_CONTROL_BYTES.sub(
        lambda m: b"\\u%04x" % (0x7F if m.group() == b"\x7f" else m.group()[1]), data
    )
