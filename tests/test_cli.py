"""The ``hookline`` command: send, serve and dev, against real processes and a real Redis."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner, Result

from hookline.cli.main import main
from hookline.ingest.server import SHUTDOWN_GRACE
from hookline.redis.embedded import EmbeddedRedis, free_port
from tests.conftest import GITHUB_SECRET, SHOPIFY_SECRET, SLACK_SECRET, STRIPE_SECRET, SW_SECRET
from tests.helpers import queued_envelopes, signed, stripe_event
from tests.live import ServeProcess, run

#: One source per scheme, as a provider's operator would configure them.
SOURCES_TOML = f"""
[sources.stripe]
scheme = "stripe"
secrets = ["{STRIPE_SECRET}"]

[sources.github]
scheme = "github"
secrets = ["{GITHUB_SECRET}"]

[sources.shopify]
scheme = "shopify"
secrets = ["{SHOPIFY_SECRET}"]

[sources.slack]
scheme = "slack"
secrets = ["{SLACK_SECRET}"]

[sources.sw]
scheme = "standard-webhooks"
secrets = ["{SW_SECRET}"]

[sources.svix]
scheme = "svix"
secrets = ["{SW_SECRET}"]

[sources.generic]
scheme = "hmac"
secrets = ["generic-secret"]
signature_header = "X-Signature"
signature_prefix = "sha256="
signature_encoding = "base64"
queue = "generic"

[sources.legacy]
scheme = "hmac"
secrets = ["legacy-secret"]
signature_header = "X-Legacy-Signature"
id = ["header:x-request-id"]
type = ["body:event"]
"""

#: Each source and the queue its events land in.
SEND_CASES = [
    ("stripe", "hookline"),
    ("github", "hookline"),
    ("shopify", "hookline"),
    ("slack", "hookline"),
    ("sw", "hookline"),
    ("svix", "hookline"),
    ("generic", "generic"),
    ("legacy", "hookline"),
]


def write_config(path: Path, redis_url: str | None, port: int, server: str = "") -> Path:
    """Write a configuration with every test source, ``redis_url``, the port and ``server`` keys."""
    redis_table = f'[redis]\nurl = "{redis_url}"\n' if redis_url else ""
    path.write_text(f"{redis_table}[server]\nport = {port}\n{server}\n{SOURCES_TOML}")
    return path


def send(*args: str) -> Result:
    """Run ``hookline send ARGS`` in-process, with hookline's variables cleared."""
    env: dict[str, str | None] = {"HOOKLINE_CONFIG": None, "HOOKLINE_REDIS_URL": None}
    return CliRunner().invoke(main, ["send", *args], env=env)


def answered_id(result: Result) -> str:
    """The event id in the receiver's answer that ``hookline send`` printed."""
    answer = json.loads(result.stdout.splitlines()[1])
    return str(answer["id"])


@pytest.fixture(scope="module")
def receiver(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """``hookline serve`` with every test source, on the shared Redis, for the whole module."""
    port = free_port()
    config = write_config(
        tmp_path_factory.mktemp("serve") / "hookline.toml", redis_server.url, port
    )
    with ServeProcess(config, port=port) as process:
        yield process


class TestSend:
    @pytest.mark.parametrize(("source", "queue"), SEND_CASES)
    def test_each_scheme_is_accepted_with_its_id_and_type(
        self, receiver: ServeProcess, r: redis.Redis, source: str, queue: str
    ) -> None:
        """`hookline send` signs as the provider would: 202, and the event is in Redis."""
        result = send(source, "--config", str(receiver.config), "--type", "order.created")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"POST {receiver.url(source)} -> 202\n")
        event_id = answered_id(result)
        [envelope] = queued_envelopes(r, queue)
        assert (envelope.source, envelope.id, envelope.type) == (source, event_id, "order.created")

    def test_default_type(self, receiver: ServeProcess, r: redis.Redis) -> None:
        """Without --type the event is typed hookline.test."""
        result = send("stripe", "--config", str(receiver.config))
        assert result.exit_code == 0, result.output
        assert [e.type for e in queued_envelopes(r)] == ["hookline.test"]

    def test_data_from_file_keeps_its_id_and_type(
        self, receiver: ServeProcess, r: redis.Redis, tmp_path: Path
    ) -> None:
        """--data @FILE sends the file's JSON; the id and type already in it are used."""
        event = {"id": "evt_from_file", "type": "invoice.paid", "data": {"object": {"n": 1}}}
        path = tmp_path / "event.json"
        path.write_bytes(orjson.dumps(event))
        result = send("stripe", "--config", str(receiver.config), "--data", f"@{path}")
        assert result.exit_code == 0, result.output
        assert "-> 202" in result.stdout
        [envelope] = queued_envelopes(r)
        assert (envelope.id, envelope.type) == ("evt_from_file", "invoice.paid")
        assert orjson.loads(envelope.body) == event

    def test_explicit_type_wins_over_the_data(
        self, receiver: ServeProcess, r: redis.Redis, tmp_path: Path
    ) -> None:
        """--type replaces a type already present in --data, as the flag says."""
        path = tmp_path / "event.json"
        path.write_bytes(b'{"id": "evt_typed", "type": "from.file"}')
        result = send(
            "stripe", "--config", str(receiver.config), "--data", f"@{path}", "--type", "flag.type"
        )
        assert result.exit_code == 0, result.output
        [envelope] = queued_envelopes(r)
        assert (envelope.id, envelope.type) == ("evt_typed", "flag.type")

    def test_header_located_source_sends_the_file_byte_for_byte(
        self, receiver: ServeProcess, r: redis.Redis, tmp_path: Path
    ) -> None:
        """For a source whose id and type are headers, the file is the body, unchanged."""
        path = tmp_path / "payload.bin"
        path.write_bytes(b"\xff\xfe not even json")
        result = send(
            "github", "--config", str(receiver.config), "--data", f"@{path}", "--type", "push"
        )
        assert result.exit_code == 0, result.output
        [envelope] = queued_envelopes(r)
        assert (envelope.type, envelope.body) == ("push", b"\xff\xfe not even json")

    def test_inline_data(self, receiver: ServeProcess, r: redis.Redis) -> None:
        """--data JSON is sent inline, with the id and type put where the source reads them."""
        result = send(
            "slack",
            "--config",
            str(receiver.config),
            "--data",
            '{"type": "event_callback", "event": {"type": "app_mention", "text": "hi"}}',
        )
        assert result.exit_code == 0, result.output
        [envelope] = queued_envelopes(r)
        assert envelope.type == "app_mention"
        assert orjson.loads(envelope.body)["event"]["text"] == "hi"

    def test_wrong_secret_is_refused_and_exits_non_zero(
        self, receiver: ServeProcess, r: redis.Redis, tmp_path: Path
    ) -> None:
        """A request the receiver refuses prints its 401 and exits 1; nothing is enqueued."""
        config = tmp_path / "other.toml"
        config.write_text('[sources.stripe]\nscheme = "stripe"\nsecrets = ["whsec_other"]\n')
        result = send("stripe", "--config", str(config), "--url", receiver.url("stripe"))
        assert result.exit_code == 1
        assert "-> 401" in result.stdout
        assert r.dbsize() == 0

    def test_unknown_source(self, receiver: ServeProcess) -> None:
        """An unknown source exits non-zero and lists the configured ones."""
        result = send("nope", "--config", str(receiver.config))
        assert result.exit_code != 0
        assert "unknown source 'nope'; configured sources: generic, github" in result.stderr

    def test_unreachable_receiver(self, tmp_path: Path) -> None:
        """With nothing listening, send says it cannot reach the URL and exits non-zero."""
        config = write_config(tmp_path / "c.toml", None, free_port())
        url = f"http://127.0.0.1:{free_port()}/hooks/stripe"
        result = send("stripe", "--config", str(config), "--url", url)
        assert result.exit_code != 0
        assert f"cannot reach {url}" in result.stderr
        assert "Traceback" not in result.output

    def test_unreachable_default_url_names_host_and_port(self, tmp_path: Path) -> None:
        """Without --url, the error names where send tried: server.host and server.port."""
        port = free_port()
        config = write_config(tmp_path / "c.toml", None, port)
        result = send("stripe", "--config", str(config))
        assert result.exit_code != 0
        assert "cannot reach" in result.stderr
        assert f"127.0.0.1:{port}" in result.stderr

    def test_invalid_url(self, receiver: ServeProcess) -> None:
        """A --url that is not an http(s) URL is refused with a message that says so."""
        result = send("stripe", "--config", str(receiver.config), "--url", "not a url")
        assert result.exit_code != 0
        assert "'not a url'" in result.stderr
        assert "http://" in result.stderr

    def test_data_that_is_not_json(self, receiver: ServeProcess, r: redis.Redis) -> None:
        """--data that is not JSON, for a source reading its id from the body, says so."""
        result = send("stripe", "--config", str(receiver.config), "--data", "id=1")
        assert result.exit_code != 0
        assert "--data is not valid JSON" in result.stderr
        assert r.dbsize() == 0

    def test_data_that_is_not_an_object(self, receiver: ServeProcess) -> None:
        """--data that is JSON but not an object, for a body-located id, says it must be one."""
        result = send("stripe", "--config", str(receiver.config), "--data", "[1, 2]")
        assert result.exit_code != 0
        assert "--data must be a JSON object" in result.stderr

    def test_data_without_room_for_the_type(self, receiver: ServeProcess) -> None:
        """--data whose event.type parent is not an object is refused with a message, no crash."""
        result = send("slack", "--config", str(receiver.config), "--data", '{"event": "x"}')
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert "--data: 'event' must be a JSON object" in result.stderr

    def test_data_file_that_cannot_be_read(self, receiver: ServeProcess, tmp_path: Path) -> None:
        """--data @FILE naming no file says which file could not be read."""
        missing = tmp_path / "missing.json"
        result = send("stripe", "--config", str(receiver.config), "--data", f"@{missing}")
        assert result.exit_code != 0
        assert f"cannot read {missing}: No such file or directory" in result.stderr

    def test_bad_config_names_the_key(self, tmp_path: Path) -> None:
        """An invalid configuration stops send with the key at fault."""
        config = tmp_path / "bad.toml"
        config.write_text('[sources.stripe]\nscheme = "stripe"\nsecrets = []\n')
        result = send("stripe", "--config", str(config))
        assert result.exit_code != 0
        assert "sources.stripe.secrets: empty" in result.stderr


class TestServe:
    def test_without_redis_url_says_how_to_set_one(self, tmp_path: Path) -> None:
        """`hookline serve` with no Redis configured exits 1 and names the key and variable."""
        config = write_config(tmp_path / "c.toml", None, free_port())
        done = run("serve", "--config", str(config))
        assert done.returncode == 1
        assert "redis.url is not set" in done.stderr
        assert "HOOKLINE_REDIS_URL" in done.stderr
        assert "Traceback" not in done.stderr

    def test_bad_config_names_every_key(self, tmp_path: Path) -> None:
        """An invalid configuration exits non-zero, naming each key at fault, no traceback."""
        config = tmp_path / "bad.toml"
        config.write_text('[server]\nport = "http"\n[sources.x]\nscheme = "stripe"\n')
        done = run("serve", "--config", str(config))
        assert done.returncode != 0
        assert f"invalid configuration in {config}" in done.stderr
        assert "server.port: expected a whole number" in done.stderr
        assert "sources.x.secrets: missing" in done.stderr
        assert "Traceback" not in done.stderr

    def test_bad_redis_url_is_a_config_error(self, tmp_path: Path) -> None:
        """A Redis URL without a redis scheme is reported as a config error, not a traceback."""
        config = write_config(tmp_path / "c.toml", "localhost:6379", free_port())
        done = run("serve", "--config", str(config))
        assert done.returncode != 0
        assert (
            "redis.url: expected a redis://, rediss://, unix:// or redis+sentinel:// URL"
            in done.stderr
        )
        assert "Traceback" not in done.stderr

    def test_sigterm_finishes_requests_in_flight(
        self, tmp_path: Path, redis_url: str, r: redis.Redis
    ) -> None:
        """On SIGTERM, requests received but not yet committed are committed, answered 202."""
        port = free_port()
        # a commit delay holds every request inside the receiver while the signal arrives
        config = write_config(tmp_path / "c.toml", redis_url, port, server='commit_delay = "1s"')
        with ServeProcess(config, port=port) as server:
            ids = [f"evt_inflight_{i}" for i in range(12)]
            sockets = [_send_stripe(port, stripe_event(event_id)) for event_id in ids]
            time.sleep(0.3)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            statuses = [_status_of(conn) for conn in sockets]
            assert server.proc.wait(timeout=15) == 0, server.output()
        for conn in sockets:
            conn.close()
        assert statuses == [202] * len(ids)
        assert sorted(e.id for e in queued_envelopes(r)) == sorted(ids)

    def test_sigterm_during_uploads_never_acknowledges_what_is_not_stored(
        self, tmp_path: Path, redis_url: str, r: redis.Redis
    ) -> None:
        """Bodies still arriving at SIGTERM: every 2xx is in Redis, and the exit is 0 in time."""
        port = free_port()
        config = write_config(tmp_path / "c.toml", redis_url, port)
        with ServeProcess(config, port=port) as server:
            bodies = [stripe_event(f"evt_upload_{i}", size=2000) for i in range(6)]
            sockets = [_send_stripe(port, body, upto=1000) for body in bodies]
            time.sleep(0.3)  # every handler is now waiting for the rest of its body
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            statuses = []
            for conn, body in zip(sockets, bodies, strict=True):
                with contextlib.suppress(OSError):
                    conn.sendall(body[1000:])
                statuses.append(_status_of(conn))
                conn.close()
            assert server.proc.wait(timeout=SHUTDOWN_GRACE + 10) == 0, server.output()
            assert time.monotonic() - started < SHUTDOWN_GRACE + 5
        acknowledged = sorted(
            f"evt_upload_{i}" for i, status in enumerate(statuses) if 200 <= status < 300
        )
        assert set(statuses) <= {0, 202, 408, 503}, statuses
        assert sorted(e.id for e in queued_envelopes(r)) == acknowledged

    def test_sigterm_drains_before_closing(
        self, tmp_path: Path, redis_url: str, r: redis.Redis
    ) -> None:
        """After SIGTERM, /readyz is 503 at once while events are still accepted for drain_delay."""
        port = free_port()
        config = write_config(tmp_path / "c.toml", redis_url, port, 'drain_delay = "1.5s"')
        with ServeProcess(config, port=port) as server:
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as ok:
                assert ok.status == 200
            with pytest.raises(urllib.error.HTTPError) as not_ready:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert not_ready.value.code == 503
            body = stripe_event("evt_while_draining")
            conn = _send_stripe(port, body)
            assert _status_of(conn) == 202
            conn.close()
            assert server.proc.wait(timeout=10) == 0
            assert 1.4 < time.monotonic() - started < 5
        assert [e.id for e in queued_envelopes(r)] == ["evt_while_draining"]

    def test_sigterm_when_idle_exits_zero_quickly(self, tmp_path: Path, redis_url: str) -> None:
        """An idle receiver stops within a second of SIGTERM with exit status 0."""
        port = free_port()
        config = write_config(tmp_path / "c.toml", redis_url, port)
        with ServeProcess(config, port=port) as server:
            started = time.monotonic()
            assert server.stop(signal.SIGTERM, timeout=10) == 0
            assert time.monotonic() - started < 2


def _send_stripe(port: int, body: bytes, upto: int | None = None) -> socket.socket:
    """Open a connection and send a signed Stripe request, the body only ``upto`` bytes."""
    head = (
        f"POST /hooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    for name, value in signed("stripe", STRIPE_SECRET, body).items():
        head += f"{name}: {value}\r\n"
    conn = socket.create_connection(("127.0.0.1", port), timeout=SHUTDOWN_GRACE + 10)
    conn.sendall(head.encode() + b"\r\n" + body[:upto])
    return conn


def _status_of(conn: socket.socket) -> int:
    """Read an HTTP response's status code from a raw socket; 0 when closed without one."""
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = conn.recv(4096)
        except OSError:
            return 0
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])
