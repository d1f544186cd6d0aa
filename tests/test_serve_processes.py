"""``hookline serve --processes N``: real receiver processes sharing one port.

Requests are spread over the processes and their metrics summed; a killed process is
replaced while the others keep the port served; SIGTERM drains every process, each as
one receiver drains, with no request lost.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from hookline.ingest.snapshots import SNAPSHOT_INTERVAL
from hookline.redis.embedded import free_port
from tests.cluster import SOURCE, Receiver, write_pipeline_config
from tests.helpers import queued_envelopes
from tests.load import body_for, deliver, headers_for
from tests.worker_support import wait_for

DRAIN = 1.0


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the supervisor's ``/metrics`` serves now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _accepted(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return samples.get(
        ("hookline_http_requests_total", (("source", SOURCE), ("status", "202"))), 0.0
    )


def _per_process(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        dict(labels)["process"]: value
        for (name, labels), value in samples.items()
        if name == "hookline_receiver_process_requests_total"
    }


def _post_all(receiver: Receiver, prefix: str, count: int) -> list[int]:
    """Deliver ``count`` events, each on a connection of its own; their statuses."""
    return [deliver(receiver.url(), body_for(f"{prefix}_{i}")) for i in range(count)]


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _send_held(port: int, event_id: str) -> socket.socket:
    body = body_for(event_id)
    head = f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers_for(body).items())
    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
    conn.sendall(head.encode() + b"\r\n" + body)
    return conn


def _status_of(conn: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(1024)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


class TestReceiverProcesses:
    def test_requests_are_spread_over_the_processes_and_their_metrics_summed(
        self, redis_url: str, r: redis.Redis, tmp_path: Path
    ) -> None:
        """With two processes, new connections reach both; every event is stored once and
        the supervisor's /metrics counts each request once, with each process's share."""
        metrics_port = free_port()
        config = write_pipeline_config(tmp_path / "hookline.toml", redis_url)
        with config.open("a") as extra:
            extra.write(f"[metrics]\nreceiver_port = {metrics_port}\n")
        with Receiver(config, tmp_path / "serve.log", processes=2) as receiver:
            assert _post_all(receiver, "evt_spread", 120) == [202] * 120
            wait_for(
                lambda: _accepted(_metrics(metrics_port)) == 120,
                timeout=5 * SNAPSHOT_INTERVAL,
                what="the summed count of 202s",
            )
            shares = _per_process(_metrics(metrics_port))
        assert sorted(shares) == ["0", "1"] and sum(shares.values()) == 120
        assert min(shares.values()) >= 12, f"connections not spread: {shares}"
        assert len({e.id for e in queued_envelopes(r)}) == 120

    def test_a_killed_process_is_replaced_while_the_port_stays_served(
        self, redis_url: str, r: redis.Redis, tmp_path: Path
    ) -> None:
        """SIGKILL of one process: every request sent right after is still answered 202 by
        the other, a new process takes the slot and serves, and no count goes back."""
        metrics_port = free_port()
        config = write_pipeline_config(tmp_path / "hookline.toml", redis_url)
        with config.open("a") as extra:
            extra.write(f"[metrics]\nreceiver_port = {metrics_port}\n")
        with Receiver(config, tmp_path / "serve.log", processes=2) as receiver:
            assert _post_all(receiver, "evt_before", 40) == [202] * 40
            time.sleep(2 * SNAPSHOT_INTERVAL)  # every process has written its counts
            before = _per_process(_metrics(metrics_port))
            victim, survivor = receiver.children()
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: victim not in receiver.children(), what="the kill to be reaped")
            assert _post_all(receiver, "evt_after_kill", 40) == [202] * 40
            wait_for(
                lambda: len(receiver.children()) == 2, timeout=10, what="a replacement process"
            )
            assert survivor in receiver.children()
            assert _post_all(receiver, "evt_after_restart", 60) == [202] * 60
            wait_for(
                lambda: _accepted(_metrics(metrics_port)) == 140,
                timeout=5 * SNAPSHOT_INTERVAL,
                what="every request counted",
            )
            after = _per_process(_metrics(metrics_port))
            assert receiver.stop() == 0, receiver.output()
        assert all(after[slot] >= count for slot, count in before.items()), (before, after)
        assert "receiver process died; restarting" in receiver.output()
        assert len({e.id for e in queued_envelopes(r)}) == 140

    def test_sigterm_drains_every_process_and_loses_no_request(
        self, redis_url: str, r: redis.Redis, tmp_path: Path
    ) -> None:
        """SIGTERM to the supervisor: every process answers /readyz 503 at once and still
        accepts during the drain; requests held in either process are answered 202 and
        stored; each process exits after its drain, then the supervisor exits 0."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml", redis_url, server={"drain_delay": DRAIN, "commit_delay": 1}
        )
        with Receiver(config, tmp_path / "serve.log", processes=2) as receiver:
            held = [_send_held(receiver.port, f"evt_held_{i}") for i in range(16)]
            time.sleep(0.3)  # received, and held by the commit delay
            started = time.monotonic()
            receiver.send(signal.SIGTERM)
            time.sleep(0.2)
            assert {_readyz(receiver.port) for _ in range(20)} == {503}
            late = _send_held(receiver.port, "evt_while_draining")
            statuses = [_status_of(conn) for conn in [*held, late]]
            assert receiver.wait(timeout=30) == 0, receiver.output()
            took = time.monotonic() - started
        for conn in [*held, late]:
            conn.close()
        assert statuses == [202] * 17
        assert sorted(e.id for e in queued_envelopes(r)) == sorted(
            [f"evt_held_{i}" for i in range(16)] + ["evt_while_draining"]
        )
        assert receiver.output().count('"event":"draining"') == 2
        assert DRAIN < took < DRAIN + 5

    def test_a_taken_port_is_one_start_up_error(self, redis_url: str, tmp_path: Path) -> None:
        """A port another program listens on stops `serve -n 2` at start-up with one line
        naming the address, exit 1, and no process left behind."""
        config = write_pipeline_config(tmp_path / "hookline.toml", redis_url)
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        receiver = Receiver(config, tmp_path / "serve.log", port=port, processes=2)
        try:
            with pytest.raises(AssertionError, match="exited with 1"):
                receiver.start()
        finally:
            holder.close()
        assert f"port {port} (--port) is already in use" in receiver.output()
        assert "Traceback" not in receiver.output()
