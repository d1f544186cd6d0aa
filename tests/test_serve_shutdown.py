"""Receiver SIGTERM: after the drain delay it waits for requests in flight, then stops.

``tests/test_cli.py`` covers the drain itself (``/readyz`` 503 while still accepting),
requests held in the group commit, uploads at SIGTERM and the idle exit; this adds that
the listener stays open until requests in flight are answered, even a body still
arriving when the drain ends, and closes as soon as they are.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
import redis

from tests.cluster import SOURCE, Receiver, write_pipeline_config
from tests.helpers import queued_envelopes
from tests.load import body_for, headers_for

DRAIN = 0.5


def _start_upload(port: int, body: bytes, sent: int) -> socket.socket:
    """Open a connection and send a signed request's headers and ``sent`` body bytes."""
    head = f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers_for(body).items())
    conn = socket.create_connection(("127.0.0.1", port), timeout=15)
    conn.sendall(head.encode() + b"\r\n" + body[:sent])
    return conn


def _status_of(conn: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(1024)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


class TestReceiverShutdown:
    def test_requests_in_flight_when_the_drain_ends_are_answered_then_the_port_closes(
        self, redis_url: str, r: redis.Redis, tmp_path: Path
    ) -> None:
        """A request still in the receiver when the drain delay ends is answered 202 and
        stored; the receiver then closes its port at once and exits 0."""
        hold = DRAIN + 1.5
        config = write_pipeline_config(
            tmp_path / "hookline.toml",
            redis_url,
            server={"drain_delay": DRAIN, "commit_delay": hold},
        )
        with Receiver(config, tmp_path / "serve.log") as receiver:
            body = body_for("evt_in_flight")
            request = _start_upload(receiver.port, body, sent=len(body))
            time.sleep(0.2)  # received, and held by the commit delay
            receiver.send(signal.SIGTERM)
            time.sleep(DRAIN + 0.5)
            assert receiver.alive(), "exited with a request in flight"
            assert _status_of(request) == 202
            answered = time.monotonic()
            request.close()
            assert receiver.wait(timeout=10) == 0, receiver.output()
            assert time.monotonic() - answered < 1.0, "lingered after the last request"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", receiver.port), timeout=2).close()
        assert [e.id for e in queued_envelopes(r)] == ["evt_in_flight"]

    def test_upload_in_progress_when_the_drain_ends_completes(
        self, redis_url: str, r: redis.Redis, tmp_path: Path
    ) -> None:
        """A request whose body is still arriving when the drain delay ends is read to its
        end, answered 202 and stored before the receiver exits 0."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml",
            redis_url,
            server={"drain_delay": DRAIN, "body_timeout": 3, "min_body_rate": 1},
        )
        with Receiver(config, tmp_path / "serve.log") as receiver:
            body = body_for("evt_uploading", padding="x" * 2000)
            upload = _start_upload(receiver.port, body, sent=100)
            time.sleep(0.2)  # the handler now waits for the rest of the body
            receiver.send(signal.SIGTERM)
            time.sleep(DRAIN + 0.5)  # the drain is over, the upload still open
            assert receiver.alive(), "exited with an upload in flight"
            upload.sendall(body[100:])
            status = _status_of(upload)
            upload.close()
            assert receiver.wait(timeout=10) == 0, receiver.output()
        assert status == 202
        assert [e.id for e in queued_envelopes(r)] == ["evt_uploading"]
