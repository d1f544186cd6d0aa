"""A Redis password never reaches an operator: every command, every output, every log line.

The password is full of the characters that URL parsers split on (``#?/@:``). Each command
runs as a real process, against a real Redis that requires that password, once with the
password percent-encoded (everything works) and once raw (every command refuses the URL
in one line, no traceback); everything it writes is searched for the password and for
each of its parts.
"""

from __future__ import annotations

import concurrent.futures
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from hookline.redis.embedded import EmbeddedRedis, free_port
from tests.live import HOOKLINE, clean_env

PASSWORD = "Kx7q#Vm2?Zp9/Lw4@Ht6:Rb3"
#: The password and every piece a parser could cut it into.
PIECES = [PASSWORD, quote(PASSWORD, safe=""), *re.split(r"[#?/@:]", PASSWORD)]
#: A console token long enough to start with.
TOKEN = "console-token-for-the-secrets-test-0123456789"
#: Commands that run to their end, after ``hookline``.
ONE_SHOT = [
    ["check"],
    ["dlq", "stats"],
    ["dlq", "list"],
    ["dlq", "show", "no-such-entry"],
    ["dlq", "export"],
    ["dlq", "replay", "--all"],
    ["dlq", "purge", "--all", "--yes"],
    ["work", "--burst"],
]


def _config(path: Path, url: str, port: int) -> Path:
    path.write_text(
        f'[redis]\nurl = "{url}"\n'
        f"[server]\nport = {port}\n"
        '[sources.demo]\nscheme = "hmac"\nsecrets = ["demo-secret"]\n'
        'signature_header = "X-Signature"\n'
        '[workers]\nhandlers = ["hookline.workers.demo"]\n'
        f'[console]\ntoken = "{TOKEN}"\n'
    )
    return path


@pytest.fixture
def guarded(private_redis: EmbeddedRedis) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own that requires :data:`PASSWORD`."""
    with redis.Redis.from_url(private_redis.url) as admin:
        admin.config_set("requirepass", PASSWORD)
    yield private_redis


def _leaks(text: str) -> list[str]:
    return [piece for piece in PIECES if piece and piece in text]


def _run(args: list[str], env: dict[str, str], log: Path, timeout: float = 60) -> int:
    with log.open("wb") as out:
        return subprocess.run(
            [HOOKLINE, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        ).returncode


def _serve_until_up(
    args: list[str], env: dict[str, str], log: Path, port: int, stop: int = signal.SIGTERM
) -> int:
    """Start a serving command, wait until its port answers (or it exits), then stop it."""
    with log.open("wb") as out:
        proc = subprocess.Popen([HOOKLINE, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=1).close()
                break
            except urllib.error.HTTPError:  # an answer all the same (the receiver's 404)
                break
            except OSError:
                time.sleep(0.1)
        if proc.poll() is None:
            time.sleep(0.5)  # its start-up lines are written
            proc.send_signal(stop)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class TestPasswordNeverShown:
    @pytest.mark.parametrize("encoded", [True, False], ids=["encoded", "raw"])
    def test_no_command_prints_the_password_or_a_part_of_it(
        self, guarded: EmbeddedRedis, tmp_path: Path, encoded: bool
    ) -> None:
        """check, dlq *, work, serve, console, dev and send, with the password in the
        configuration, in HOOKLINE_REDIS_URL or in a receiver URL, print none of it; with
        the raw password each refuses the URL in one line and exits non-zero."""
        secret = quote(PASSWORD, safe="") if encoded else PASSWORD
        url = f"redis://:{secret}@127.0.0.1:{guarded.port}/0"
        port = free_port()
        config = _config(tmp_path / "hookline.toml", url, port)
        env = clean_env()
        outputs: dict[str, tuple[int, str]] = {}

        def record(name: str, code: int, log: Path) -> None:
            outputs[name] = (code, log.read_text(errors="replace"))

        runs: list[tuple[str, list[str], dict[str, str]]] = [
            (" ".join(args), [*args, "--config", str(config)], env) for args in ONE_SHOT
        ]
        runs.append(("dlq stats (env)", ["dlq", "stats"], clean_env(HOOKLINE_REDIS_URL=url)))
        for form, password in (("encoded", quote(PASSWORD, safe="")), ("raw", PASSWORD)):
            receiver = f"http://demo:{password}@127.0.0.1:{free_port()}/hooks/demo"
            args = ["send", "demo", "--config", str(config), "--url", receiver]
            runs.append((f"send ({form} receiver URL)", args, env))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # processes; threads just wait
            logs = [tmp_path / f"run-{n}.log" for n in range(len(runs))]
            codes = pool.map(lambda run, log: _run(run[1], run[2], log), runs, logs)
            for (name, _, _), code, log in zip(runs, codes, logs, strict=True):
                record(name, code, log)
        for name, args, stop in (
            ("serve", ["serve", "--config", str(config)], signal.SIGTERM),
            ("console", ["console", "--config", str(config), "--port", str(port)], signal.SIGTERM),
            ("dev", ["dev", "--config", str(config), "--port", str(port)], signal.SIGINT),
        ):
            log = tmp_path / f"{name}.log"
            record(name, _serve_until_up(args, env, log, port, stop), log)

        for name, (code, text) in outputs.items():
            assert _leaks(text) == [], f"{name} printed the password:\n{text}"
            assert "Traceback" not in text, f"{name}:\n{text}"
            if not encoded:
                assert code != 0, f"{name} accepted a URL it cannot read:\n{text}"
                assert "URL-encoded" in text, f"{name}:\n{text}"
        if encoded:
            assert outputs["check"][0] == 0, outputs["check"][1]
            assert "Redis at redis://***@127.0.0.1" in outputs["check"][1]
            assert outputs["dlq stats"] == (0, "the dead-letter queue is empty\n")
            assert "redis://***@127.0.0.1" in outputs["dev"][1]
            assert "http://***@127.0.0.1" in outputs["send (encoded receiver URL)"][1]
            assert "http://***@127.0.0.1" in outputs["send (raw receiver URL)"][1]
