"""Slow and greedy clients: connections that trickle, stall, or declare large bodies and
send nothing, from one address or hundreds, cannot make other clients' requests fail."""

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
from tests.load import body_for, deliver, headers_for

#: Slow connections opened at once: half trickle a body, half stall inside their headers.
SLOW_CONNECTIONS = 200
#: Content-Length the tricklers announce; they never get near it during the test.
ANNOUNCED = 4000
#: Longest a normal request may take while the slow clients hang on.
PROMPT = 1.0


class SlowClients:
    """Raw sockets to ``port``: half send a body a byte at a time, half stop mid-headers.

    With ``aliases``, each connection comes from its own loopback address (127.0.0.2 on:
    Linux routes all of 127.0.0.0/8 to the loopback device without any setup).
    """

    def __init__(self, port: int, count: int, *, every: float = 0.2, aliases: bool = False) -> None:
        self.tricklers: list[socket.socket] = []
        self.stalled: list[socket.socket] = []
        self.every = every
        self.closed_by_server = 0
        head = _head(ANNOUNCED)
        for index in range(count):
            conn = _connect(port, _alias(index) if aliases else "127.0.0.1")
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


def _alias(index: int) -> str:
    """The ``index``-th loopback alias: 127.0.0.2, 127.0.0.3, … 127.0.1.x."""
    n = index + 2
    return f"127.0.{n // 250}.{n % 250 + 2}" if n >= 250 else f"127.0.0.{n}"


def _connect(port: int, address: str) -> socket.socket:
    """A connection to the receiver on ``port`` from the local ``address``."""
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0))


def _head(length: int) -> bytes:
    """A signed-looking request head declaring a ``length``-byte body."""
    return (
        f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        f"X-Sig: {'0' * 64}\r\n\r\n"
    ).encode()


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
        finally:
            slow.close()
        queued = sorted(e.id for e in queued_envelopes(r))
        assert queued == sorted(f"evt_prompt_{n}" for n in range(10))
        assert receiver.alive()

    @pytest.mark.parametrize(
        ("server", "every"),
        [
            ({"body_timeout": 1}, 0.2),  # within the rate, past the body timeout
            ({"body_timeout": 30, "min_body_rate": 100}, 0.1),  # 10 bytes a second: too slow
        ],
        ids=["body-timeout", "min-body-rate"],
    )
    def test_trickled_body_is_cut_off_with_408_near_one_second(
        self, redis_url: str, tmp_path: Path, server: dict[str, float], every: float
    ) -> None:
        """A body still trickling in when server.body_timeout passes, or arriving slower
        than server.min_body_rate after its first second, is answered 408 near that second
        (not after a 30 s body timeout); the connection is freed and the receiver keeps
        accepting events."""
        config = write_pipeline_config(tmp_path / "hookline.toml", redis_url, server=server)
        with Receiver(config, tmp_path / "serve.log") as receiver:
            slow = SlowClients(receiver.port, 8, every=every)
            try:
                started = time.monotonic()
                statuses = [_status_within(conn, 5.0) for conn in list(slow.tricklers)]
                elapsed = time.monotonic() - started
            finally:
                slow.close()
            assert statuses == [408] * 4
            assert elapsed < 3.0, "cut off near 1 s, not later"
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


#: A GitHub-sized body limit, as the compose configuration sets it.
LARGE = 25 * 1024 * 1024


class TestBodyBudget:
    def test_idle_connections_declaring_large_bodies_from_many_addresses_take_nothing(
        self, redis_url: str, tmp_path: Path, r: redis.Redis
    ) -> None:
        """200 connections from 200 loopback addresses declare 25 MiB bodies (every other
        one 1 MiB: reserved up front, 2 + 14 of them would fill the default 64 MiB) and send
        nothing, while others trickle: a normal client's requests keep getting 202."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml", redis_url, source={"max_body": LARGE}
        )
        with Receiver(config, tmp_path / "serve.log") as receiver:
            idle = [_connect(receiver.port, _alias(i)) for i in range(SLOW_CONNECTIONS)]
            slow = SlowClients(receiver.port, 20, aliases=True)
            try:
                for index, conn in enumerate(idle):
                    conn.sendall(_head(LARGE if index % 2 else 1024 * 1024))
                statuses = []
                for n in range(20):
                    statuses.append(deliver(receiver.url(), body_for(f"evt_normal_{n}")))
                    time.sleep(0.1)
            finally:
                slow.close()
                for conn in idle:
                    conn.close()
            assert statuses == [202] * 20, receiver.output()[-2000:]
        assert len(queued_envelopes(r)) == 20

    def test_one_address_holds_only_its_share_of_the_budget(
        self, redis_url: str, tmp_path: Path
    ) -> None:
        """Bodies from one address past server.max_buffered_per_client are answered 503
        while another address's request is still accepted; once they end, the address
        may send again."""
        mib = 1024 * 1024
        config = write_pipeline_config(
            tmp_path / "hookline.toml",
            redis_url,
            server={"max_buffered": 8 * mib, "max_buffered_per_client": 2 * mib},
            source={"max_body": 2 * mib},
        )
        with Receiver(config, tmp_path / "serve.log") as receiver:
            greedy = [_connect(receiver.port, "127.0.0.9") for _ in range(3)]
            try:
                for conn in greedy[:2]:  # 1 MiB of 2 MiB each: the share is taken
                    conn.sendall(_head(2 * mib) + b" " * mib)
                time.sleep(0.3)
                greedy[2].sendall(_head(2 * mib) + b" " * (mib // 2))
                assert _status_within(greedy[2], 5.0) == 503
                assert deliver(receiver.url(), body_for("evt_other_address")) == 202
            finally:
                for conn in greedy:
                    conn.close()
            time.sleep(0.3)  # the closed requests release what they held
            again = _connect(receiver.port, "127.0.0.9")
            try:
                body = body_for("evt_greedy_again")
                head = (
                    f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    f"Content-Length: {len(body)}\r\n"
                )
                signature = "".join(f"{k}: {v}\r\n" for k, v in headers_for(body).items())
                again.sendall(head.encode() + signature.encode() + b"\r\n" + body)
                assert _status_within(again, 5.0) == 202
            finally:
                again.close()
