"""Slow clients: connections that trickle or stall cannot exhaust the receiver."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cluster import SOURCE, Receiver, write_pipeline_config
from tests.helpers import queued_envelopes
from tests.load import body_for, deliver

#: Slow connections opened at once: half trickle a body, half stall inside their headers.
SLOW_CONNECTIONS = 200
#: Content-Length the tricklers announce; they never get near it during the test.
ANNOUNCED = 4000
#: Longest a normal request may take while the slow clients hang on.
PROMPT = 1.0


class SlowClients:
    """Raw sockets to ``port``: half send a body a byte at a time, half stop mid-headers."""

    def __init__(self, port: int, count: int, *, every: float = 0.2) -> None:
        self.tricklers: list[socket.socket] = []
        self.stalled: list[socket.socket] = []
        self.every = every
        self.closed_by_server = 0
        head = (
            f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {ANNOUNCED}\r\n"
            f"X-Sig: {'0' * 64}\r\n\r\n"
        ).encode()
        for index in range(count):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            if index % 2:
                conn.sendall(f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0".encode())
                self.stalled.append(conn)
            else:
                conn.sendall(head + b"{")
                self.tricklers.append(conn)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="trickle", daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(self.every):
            for conn in list(self.tricklers):
                try:
                    conn.sendall(b" ")
                except OSError:
                    self.tricklers.remove(conn)
                    self.closed_by_server += 1

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in [*self.tricklers, *self.stalled]:
            with contextlib.suppress(OSError):
                conn.close()


@pytest.fixture
def receiver(redis_url: str, tmp_path: Path) -> Iterator[Receiver]:
    """``hookline serve`` on the shared Redis, with the ``test`` source."""
    config = write_pipeline_config(tmp_path / "hookline.toml", redis_url)
    with Receiver(config, tmp_path / "serve.log") as process:
        yield process


def _ended_within(conn: socket.socket, seconds: float) -> bool:
    """Whether the server answers or closes ``conn`` within ``seconds``."""
    conn.settimeout(seconds)
    try:
        conn.recv(1024)
    except TimeoutError:
        return False
    except OSError:  # reset by the server
        return True
    return True


def _status_within(conn: socket.socket, seconds: float) -> int:
    """The status the server answers on ``conn`` within ``seconds``; 0 if it just closes."""
    conn.settimeout(seconds)
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(1024)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


class TestSlowClients:
    def test_trickling_and_stalled_connections_do_not_starve_a_normal_request(
        self, receiver: Receiver, r: redis.Redis
    ) -> None:
        """While 200 connections trickle a body a byte at a time or stall mid-headers, signed
        requests are still answered 202 within a second, and each is queued."""
        slow = SlowClients(receiver.port, SLOW_CONNECTIONS)
        try:
            time.sleep(0.5)  # every slow request is now parsed or parked in the receiver
            latencies = []
            for n in range(10):
                started = time.monotonic()
                assert deliver(receiver.url(), body_for(f"evt_prompt_{n}")) == 202
                latencies.append(time.monotonic() - started)
                time.sleep(0.1)
            assert max(latencies) < PROMPT, latencies
            assert len(slow.tricklers) == SLOW_CONNECTIONS // 2, "a trickler was cut off early"
        finally:
            slow.close()
        queued = sorted(e.id for e in queued_envelopes(r))
        assert queued == sorted(f"evt_prompt_{n}" for n in range(10))
        assert receiver.alive()

    def test_trickled_body_is_cut_off_with_408_after_the_body_timeout(
        self, redis_url: str, tmp_path: Path
    ) -> None:
        """A body still trickling in when server.body_timeout passes is answered 408, the
        connection is freed, and the receiver keeps accepting events."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml", redis_url, server={"body_timeout": 1}
        )
        with Receiver(config, tmp_path / "serve.log") as receiver:
            slow = SlowClients(receiver.port, 8)
            try:
                started = time.monotonic()
                statuses = [_status_within(conn, 5.0) for conn in list(slow.tricklers)]
                elapsed = time.monotonic() - started
            finally:
                slow.close()
            assert statuses == [408] * 4
            assert elapsed < 3.0, "cut off near the 1 s body timeout, not later"
            assert deliver(receiver.url(), body_for("evt_after_trickle")) == 202

    def test_stalled_headers_are_cut_off_after_the_keepalive_timeout(
        self, redis_url: str, tmp_path: Path
    ) -> None:
        """A connection that stops sending in the middle of its headers is closed once
        server.keepalive_timeout has passed since it opened, and not before."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml", redis_url, server={"keepalive_timeout": 1.5}
        )
        with Receiver(config, tmp_path / "serve.log") as receiver:
            slow = SlowClients(receiver.port, 2, every=3600)
            try:
                early = _ended_within(slow.stalled[0], 0.5)
                closed = _ended_within(slow.stalled[0], 3.0)
            finally:
                slow.close()
        assert not early, "the stalled connection was closed before the keepalive timeout"
        assert closed, "the stalled connection was still open 3.5 s after it stalled"
