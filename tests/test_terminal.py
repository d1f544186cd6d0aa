"""Terminal-safe output: control characters stored in Redis reach the screen escaped."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner

from hookline.cli.main import main
from hookline.dlq.store import DeadLetters
from hookline.envelope import Envelope
from hookline.terminal import safe, safe_json, safe_json_bytes, safe_lines

#: Retitles the terminal window (OSC 0 … BEL), then a CSI in its 8-bit form, then DEL.
EVIL = "\x1b]0;pwned\x07 \x9b2J \x7f"
#: What must never reach the terminal raw.
RAW = ("\x1b", "\x07", "\x9b", "\x7f")


def _dead_letter(r: redis.Redis) -> str:
    """A dead letter whose error, header and (non-JSON) body hold :data:`EVIL`."""
    attempt = {
        "at": time.time(),
        "error_type": "ValueError",
        "message": f"bad {EVIL} input",
        "traceback": f"Traceback (most recent call last):\n  line 1\nValueError: {EVIL}",
        "worker": "host.1",
        "seconds": 0.01,
    }
    envelope = Envelope(
        "src",
        "evt_1",
        "thing",
        time.time(),
        {"x-note": f"see {EVIL}"},
        f"plain text body {EVIL}\nsecond line".encode(),
        "hookline",
        [attempt],
    )
    return DeadLetters(r).add(envelope, reason="exhausted", worker="host.1").id


class TestFunctions:
    def test_every_control_character_is_escaped(self) -> None:
        """C0, DEL and C1 come out as escapes; printable text, non-ASCII included, stays."""
        assert safe(EVIL) == "\\x1b]0;pwned\\x07 \\x9b2J \\x7f"
        assert safe("tab\tnew\nline\r") == "tab\\tnew\\nline\\r"
        assert safe("caf\u00e9 \u20ac") == "caf\u00e9 \u20ac"

    def test_line_breaks_stay_layout_in_multi_line_text(self) -> None:
        """safe_lines keeps the lines and escapes the rest."""
        assert list(safe_lines("a\x1b\nb\tc")) == ["a\\x1b", "b\\tc"]

    def test_json_stays_the_same_json(self) -> None:
        """DEL and C1 are escaped as \\u00XX in JSON text and bytes: the same value."""
        text = orjson.dumps({"m": EVIL}).decode()
        assert orjson.loads(safe_json(text)) == {"m": EVIL}
        assert not any(char in safe_json(text) for char in RAW)
        data = orjson.dumps({"m": EVIL})
        assert orjson.loads(safe_json_bytes(data)) == {"m": EVIL}
        assert not any(char.encode() in safe_json_bytes(data) for char in RAW)


class TestCommands:
    @pytest.mark.parametrize(
        "args",
        [
            ["list"],
            ["list", "--json"],
            ["show", "{id}"],
            ["show", "{id}", "--json"],
            ["stats"],
            ["stats", "--json"],
            ["export"],
            ["replay", "--all", "--dry-run"],
        ],
    )
    def test_dlq_output_holds_no_raw_control_character(
        self, r: redis.Redis, redis_url: str, tmp_path: Path, args: list[str]
    ) -> None:
        """An ESC ]0;…BEL, an 8-bit CSI and DEL in an exception message, a header and a
        non-JSON body are printed escaped by every dlq command (layout newlines kept)."""
        entry = _dead_letter(r)
        argv = ["dlq", *(a.replace("{id}", entry) for a in args)]
        result = CliRunner().invoke(main, argv, env={"HOOKLINE_REDIS_URL": redis_url})
        assert result.exit_code == 0, result.output
        output = result.stdout + result.stderr
        assert not [char for char in RAW if char in output], output
        if args == ["show", "{id}"]:
            assert "plain text body \\x1b]0;pwned\\x07 \\x9b2J \\x7f\nsecond line" in output
            assert "x-note: see \\x1b]0;pwned" in output
            assert "ValueError: bad \\x1b]0;pwned" in output
