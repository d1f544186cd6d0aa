"""What hookline logs, and how: readable at a terminal, JSON elsewhere; outages once each
way; a last "stopped" line. Real processes (a pseudo-terminal for the TTY case), real Redis."""

from __future__ import annotations

import asyncio
import http.client
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from structlog.testing import capture_logs

from hookline.ingest.readiness import PROBE_TTL
from hookline.redis.embedded import EmbeddedRedis, free_port
from tests.conftest import STRIPE_SECRET, make_settings
from tests.helpers import signed, stripe_event
from tests.live import HOOKLINE, clean_env

SOURCE = '[sources.shop]\nscheme = "hmac"\nsecrets = ["s"]\nsignature_header = "X-Sig"\n'


def work_config(tmp_path: Path, redis_url: str) -> Path:
    """A configuration a burst worker runs with at once (nothing queued)."""
    config = tmp_path / "c.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\n{SOURCE}[workers]\nhandlers = ["hookline.workers.demo"]\n'
    )
    return config


def on_a_terminal(
    *args: str,
    when: str | None = None,
    then: Callable[[subprocess.Popen[bytes]], None] | None = None,
    timeout: float = 30,
) -> str:
    """Run ``hookline ARGS`` with stderr on a pseudo-terminal until it exits; all it wrote
    there. Once the output shows ``when``, ``then(process)`` runs (once)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [HOOKLINE, *args],
        env=clean_env(TERM="xterm"),
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
                if then is not None and when is not None and when.encode() in b"".join(chunks):
                    then(proc)
                    then = None
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=timeout) == 0, b"".join(chunks).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


class TestFormat:
    def test_terminal_gets_the_console_renderer(self, tmp_path: Path, redis_url: str) -> None:
        """On a terminal, `--log-format auto` (the default) writes readable lines, not JSON,
        and the last one says the workers stopped."""
        out = on_a_terminal("work", "--config", str(work_config(tmp_path, redis_url)), "--burst")
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines and not any(line.lstrip().startswith("{") for line in lines), out
        assert "worker started" in out and "\x1b[" in out, "coloured, as structlog's renderer is"
        assert "workers stopped" in lines[-1]

    def test_a_file_gets_json_lines(self, tmp_path: Path, redis_url: str) -> None:
        """Not on a terminal, every line is a JSON object; the last one is "workers stopped"."""
        log = tmp_path / "work.log"
        with log.open("wb") as out:
            subprocess.run(
                [HOOKLINE, "work", "--config", str(work_config(tmp_path, redis_url)), "--burst"],
                env=clean_env(),
                stderr=out,
                check=True,
                timeout=30,
            )
        records = [orjson.loads(line) for line in log.read_text().splitlines()]
        assert records[-1]["event"] == "workers stopped"
        assert any(r["event"] == "worker stopped" for r in records)

    def test_flag_wins_over_the_terminal(self, tmp_path: Path, redis_url: str) -> None:
        """`--log-format json` writes JSON lines even on a terminal."""
        config = str(work_config(tmp_path, redis_url))
        out = on_a_terminal("work", "--config", config, "--burst", "--log-format", "json")
        records = [orjson.loads(line) for line in out.splitlines() if line.strip()]
        assert records[-1]["event"] == "workers stopped"

    def test_receiver_on_a_terminal_and_its_last_line(self, tmp_path: Path, redis_url: str) -> None:
        """On a terminal the receiver's access line is readable too; after SIGTERM its last
        line is "receiver stopped"."""
        port = free_port()
        config = tmp_path / "serve.toml"
        config.write_text(f'[redis]\nurl = "{redis_url}"\n[server]\ndrain_delay = 0\n{SOURCE}')

        def request_then_stop(proc: subprocess.Popen[bytes]) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/hooks/nowhere", body=b"{}")
            assert conn.getresponse().status == 404
            conn.close()
            time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)

        out = on_a_terminal(
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            when="receiver starting",
            then=request_then_stop,
        )
        lines = [line for line in out.splitlines() if line.strip()]
        assert not any(line.startswith("{") for line in lines), out
        access = next(line for line in lines if "webhook" in line)
        assert "unknown-source" in access and "404" in access
        assert "receiver stopped" in lines[-1]


async def post(client: Any, event_id: str) -> int:
    """POST a signed Stripe event; the status."""
    body = stripe_event(event_id)
    response = await client.post(
        "/hooks/stripe", data=body, headers=signed("stripe", STRIPE_SECRET, body)
    )
    return int(response.status)


class TestRedisOutage:
    async def test_lost_once_and_back_once(
        self, private_redis: EmbeddedRedis, client_for: Any
    ) -> None:
        """However many requests meet a Redis outage, the receiver logs it once when lost
        (with the reason) and once when back; each request keeps its own access line."""
        client = await client_for(make_settings(), private_redis.url)
        with capture_logs() as logs:
            assert await post(client, "evt_before") == 202
            private_redis.stop(kill=True)
            assert [await post(client, f"evt_down_{n}") for n in range(20)] == [503] * 20
            assert (await client.get("/readyz")).status == 503
            private_redis.start()
            assert await post(client, "evt_after") == 202
            assert await post(client, "evt_later") == 202
        events = [entry["event"] for entry in logs if entry["event"] != "webhook"]
        assert events == [
            "redis unavailable: events are answered 503 until it is back",
            "redis back",
        ]
        lost = next(entry for entry in logs if entry["event"].startswith("redis unavailable"))
        assert lost["log_level"] == "error" and lost["error"] == "ConnectionError"
        assert "Connection refused" in lost["reason"] or "connect" in lost["reason"].lower()
        assert sum(entry.get("status") == 503 for entry in logs) == 20

    async def test_outage_seen_by_readiness_alone_is_logged_too(
        self, private_redis: EmbeddedRedis, client_for: Any
    ) -> None:
        """With no webhook traffic, the readiness probe finds the outage and the recovery."""
        client = await client_for(make_settings(), private_redis.url)
        with capture_logs() as logs:
            assert (await client.get("/readyz")).status == 200
            private_redis.stop(kill=True)
            await asyncio.sleep(PROBE_TTL + 0.05)  # the probe's answer is reused that long
            for _ in range(3):
                assert (await client.get("/readyz")).status == 503
                await asyncio.sleep(PROBE_TTL + 0.05)
            private_redis.start()
            assert (await client.get("/readyz")).status == 200
        assert [entry["event"] for entry in logs] == [
            "redis unavailable: events are answered 503 until it is back",
            "redis back",
        ]
